"""The filter language: building, matching semantics, dict round trip and CLI parsing."""

from __future__ import annotations

import pytest

from indexers import Condition, Filter, FilterError, Range, parse_filters

PAYLOAD = {"modality": "CT", "age": 42, "score": 0.5, "flag": True, "labels": ["effusion", "cardiomegaly"]}


def test_from_dict_maps_scalar_list_and_dict_to_eq_in_and_range() -> None:
    spec = {"modality": "CT", "body_part": ["chest", "head"], "age": {"gte": 30, "lt": 60}}
    built = Filter.from_dict(spec)
    assert built.conditions == (
        Condition("modality", "eq", "CT"),
        Condition("body_part", "in", ("chest", "head")),
        Condition("age", "range", Range(gte=30, lt=60)),
    )
    assert built.to_dict() == spec
    assert Filter.from_dict(built.to_dict()) == built
    assert hash(built) == hash(Filter.from_dict(spec))


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ({"modality": "CT"}, True),
        ({"modality": "ct"}, False),
        ({"modality": ["MR", "CT"]}, True),
        ({"age": 42}, True),
        ({"age": 42.0}, True),
        ({"age": "42"}, False),  # strings only equal strings
        ({"flag": True}, True),
        ({"flag": 1}, False),  # booleans only equal booleans
        ({"age": True}, False),
        ({"score": {"gt": 0.4, "lte": 0.5}}, True),
        ({"score": {"gt": 0.5}}, False),
        ({"flag": {"gte": 0}}, False),  # ranges match numbers only
        ({"modality": {"gte": 0}}, False),
        ({"labels": "effusion"}, True),  # list field: any element
        ({"labels": ["nodule", "cardiomegaly"]}, True),
        ({"labels": "nodule"}, False),
        ({"missing": "x"}, False),  # a missing field never matches
        ({"missing": {"gte": 0}}, False),
        ({"modality": "CT", "age": {"lt": 40}}, False),  # AND
        ({}, True),
    ],
)
def test_matches(spec: dict, expected: bool) -> None:
    assert Filter.from_dict(spec).matches(PAYLOAD) is expected


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"bad name": 1}, "invalid field name 'bad name'"),
        ({'x" or 1==1 or "': 1}, "invalid field name"),
        ({"1abc": 1}, "starting with a letter"),
        ({"_id": "a"}, "starting with a letter"),
        ({"body_part": []}, "has no values"),
        ({"age": {}}, "empty range"),
        ({"age": {"gte": "thirty"}}, "expected a finite number"),
        ({"age": {"from": 1}}, "unknown keys"),
        ({"age": {"gte": float("nan")}}, "finite"),
        ({"modality": None}, "expected a str"),
        ({"modality": {"x": 1}.keys()}, "expected a str"),
    ],
)
def test_bad_filters_name_the_problem(spec: dict, message: str) -> None:
    with pytest.raises(FilterError, match=message):
        Filter.from_dict(spec)


def test_bad_condition_op_and_to_dict_with_repeated_field() -> None:
    with pytest.raises(FilterError, match="unknown filter op 'like'"):
        Condition("modality", "like", "C%")  # type: ignore[arg-type]
    twice = Filter((Condition("labels", "eq", "a"), Condition("labels", "eq", "b")))
    assert twice.matches({"labels": ["a", "b"]}) and not twice.matches({"labels": ["a"]})
    with pytest.raises(FilterError, match="several conditions on 'labels'"):
        twice.to_dict()


def test_parse_filters_cli_forms() -> None:
    parsed = parse_filters(["modality=CT", "body_part=chest,head", "age>=30", "age<60", "year=2000..2010"])
    assert parsed == Filter.from_dict(
        {
            "modality": "CT",
            "body_part": ["chest", "head"],
            "age": {"gte": 30, "lt": 60},
            "year": {"gte": 2000, "lte": 2010},
        }
    )
    assert parse_filters([]) is None and parse_filters(None) is None
    assert parse_filters(["age=30"]).to_dict() == {"age": "30"}  # equality keeps the string
    assert parse_filters(["id=007"]).to_dict() == {"id": "007"}
    assert parse_filters(["score>0.5", "score<=1e1"]).to_dict() == {"score": {"gt": 0.5, "lte": 10.0}}
    assert parse_filters(["year=2000.."]).to_dict() == {"year": {"gte": 2000}}
    assert parse_filters(["year=..2010"]).to_dict() == {"year": {"lte": 2010}}
    assert parse_filters(["note=a..b"]).to_dict() == {"note": "a..b"}  # not numbers: plain equality
    assert parse_filters([" modality = CT "]).to_dict() == {"modality": "CT"}


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("modality", "cannot parse filter 'modality'"),
        ("modality=", "cannot parse"),
        ("modality!=CT", "cannot parse"),
        ("=CT", "cannot parse"),
        ("age>=thirty", "'thirty' is not a number"),
        ("body part=chest", "cannot parse"),
        ("body-part=chest", "field 'body-part' must be"),
        ("body_part=chest,,head", "empty value"),
        ("age>=1e400", "finite number"),
    ],
)
def test_parse_filters_bad_forms_show_accepted_forms(expression: str, message: str) -> None:
    with pytest.raises(FilterError, match=message) as caught:
        parse_filters([expression])
    if "cannot parse" in message or "not a number" in message:
        assert "field=lo..hi" in str(caught.value)


def test_parse_filters_refuses_a_bound_given_twice() -> None:
    with pytest.raises(FilterError, match="set age gte twice"):
        parse_filters(["age>=30", "age>=40"])
