"""Search: keyword, dense and hybrid over real IU X-ray reports, filters, batching and explanations."""

from __future__ import annotations

import pytest

from engine.errors import QueryError
from engine.ingest import ingest_records
from engine.search import SearchRequest
from engine.workspace import Workspace
from indexers import parse_filters
from tests.engine.conftest import make_settings


@pytest.fixture(scope="module")
def service(tmp_path_factory, iu_records, minilm):
    workspace = Workspace(make_settings(tmp_path_factory.mktemp("home")))
    workspace._encoders["minilm"] = minilm
    collection = workspace.collection(create=True)
    ingest_records(collection, iu_records, {"text": minilm}, source="iu-xray", progress=False)
    yield workspace.search_service()
    workspace.close()


def _mentions(hit, word):
    return word in hit.text.lower()


def test_keyword_finds_reports_with_the_word(service):
    hits = service.search(SearchRequest(text="cardiomegaly", mode="keyword", k=5))
    assert len(hits) == 5
    assert all(_mentions(h, "cardiomegaly") for h in hits)
    assert all(h.why.ranks.keys() == {"keyword"} and "cardiomegaly" in h.why.matched_terms for h in hits)


def test_dense_finds_words_the_query_does_not_use(service):
    hits = service.search(SearchRequest(text="broken ribs", mode="dense", k=10))
    assert (
        sum(_mentions(h, "rib") for h in hits) >= 3
    )  # "fracture"/"rib" reports, though no report says "broken"
    assert all(h.why.spaces == ("text",) for h in hits)
    scores = [h.score for h in hits]
    assert scores == sorted(scores, reverse=True) and 0.2 < scores[0] <= 1.0001  # raw cosine in dense mode


def test_dense_retrieves_a_report_from_its_own_text(service, iu_records):
    record = iu_records[123]
    hit = service.search(SearchRequest(text=record.text(), mode="dense", k=1))[0]
    assert hit.id == record.id and hit.score > 0.99


def test_hybrid_fuses_both_rankers(service):
    hits = service.search(SearchRequest(text="hiatal hernia", k=10))
    assert any(set(h.why.ranks) == {"keyword", "dense:text"} for h in hits)
    assert _mentions(hits[0], "hernia")


def test_filters_apply_to_every_ranker(service, iu_records):
    split = next(r.split for r in iu_records if r.split)
    wanted = {r.id for r in iu_records if r.split == split}
    for mode in ("keyword", "dense", "hybrid"):
        hits = service.search(
            SearchRequest(text="pleural effusion", mode=mode, k=10, filter=parse_filters([f"split={split}"]))
        )
        assert hits and all(h.id in wanted for h in hits), mode


def test_search_many_equals_single_searches(service):
    requests = [SearchRequest(text=t, k=5) for t in ("pneumothorax", "scoliosis", "granuloma")]
    batched = service.search_many(requests)
    assert [[h.id for h in hits] for hits in batched] == [[h.id for h in service.search(r)] for r in requests]


def test_hit_json_has_design_fields(service):
    data = service.search(SearchRequest(text="atelectasis", k=1))[0].to_dict()
    assert set(data) >= {
        "id",
        "score",
        "kind",
        "source",
        "text",
        "image_path",
        "modality",
        "body_part",
        "concepts",
        "why",
    }
    assert set(data["why"]) >= {"spaces", "matched_concepts", "matched_terms"}


def test_hit_to_dict_is_a_deep_plain_copy():
    """Field by field, as `dataclasses.asdict` gave (tuples as lists), and no dict shared with the hit."""
    import dataclasses
    import json

    from engine.search import Hit, Why

    mention = {"concept_id": "C1", "name": "effusion", "polarity": "negated", "via": ("C2", "C3")}
    why = Why(("text",), {"keyword": 1}, {"keyword": 2.5}, ("effusion",), ({"id": "C1", "path": [mention]},))
    hit = Hit("r1", 0.5, "report", "iu-xray", "No effusion.", None, "XR", "chest", (mention,), why)
    data = hit.to_dict()
    assert json.dumps(data, sort_keys=True) == json.dumps(dataclasses.asdict(hit), sort_keys=True)
    assert data["concepts"] == [{**mention, "via": ["C2", "C3"]}] and isinstance(data["why"]["spaces"], list)
    data["concepts"][0]["name"] = "changed"
    data["why"]["matched_concepts"][0]["path"][0]["name"] = "changed"
    data["why"]["ranks"]["keyword"] = 9
    assert mention["name"] == "effusion" and hit.why.ranks == {"keyword": 1}


@pytest.mark.parametrize(
    "request_, message",
    [
        (SearchRequest(text="x", mode="fuzzy"), "unknown search mode"),
        (SearchRequest(text="   "), "empty query"),
        (SearchRequest(text="x" * 3000), "limit"),
        (SearchRequest(text="x", k=0), "k=0"),
        (SearchRequest(text="x", space="clip"), "space 'clip'"),
    ],
)
def test_bad_requests_are_refused(service, request_, message):
    with pytest.raises(QueryError, match=message):
        service.search(request_)
