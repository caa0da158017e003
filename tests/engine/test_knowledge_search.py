"""The knowledge graph in ingest and search: concepts stored per record, negation-aware hybrid search, explanations."""

from __future__ import annotations

import json

import pytest

from engine.knowledge import ConceptConstraint, Knowledge
from engine.search import SearchRequest
from engine.workspace import Workspace
from tests.engine.conftest import make_settings


@pytest.fixture(scope="module")
def workspace(tmp_path_factory, iu_records, minilm, knowledge):
    ws = Workspace(make_settings(tmp_path_factory.mktemp("kg-home")))
    ws._encoders["minilm"] = minilm
    ws._knowledge = knowledge
    from engine.ingest import ingest_records

    collection = ws.collection(create=True)
    ingest_records(
        collection,
        iu_records,
        {"text": minilm},
        source="iu-xray",
        linker=knowledge.link_records,
        progress=False,
    )
    yield ws
    ws.close()


def _denies(knowledge: Knowledge, query: str, hit) -> bool:
    mentions = [
        {"concept_id": c["id"], "polarity": "negated" if c["negated"] else "present", "field": c["field"]}
        for c in hit.concepts
    ]
    return any(knowledge.evidence(c, mentions).denials for c in knowledge.constraints(query))


def test_ingest_stores_concepts_with_polarity(workspace):
    collection = workspace.collection()
    assert collection.has_concepts()
    record = next(r for r in collection.iter_records().__next__() if "no pneumothorax" in r.text().lower())
    chips = (
        workspace.search_service()._hits(SearchRequest(text="x"), {"keyword": [(record.id, 1.0)]})[0].concepts
    )
    assert any(c["name"] == "pneumothorax" and c["negated"] for c in chips)


def test_finding_query_drops_reports_that_deny_it(workspace, knowledge):
    service = workspace.search_service()
    plain = service.search(SearchRequest(text="pleural effusion", k=10, use_kg=False))
    with_kg = service.search(SearchRequest(text="pleural effusion", k=10))
    assert sum(_denies(knowledge, "pleural effusion", h) for h in plain) >= 3  # the problem being fixed
    assert sum(_denies(knowledge, "pleural effusion", h) for h in with_kg) == 0
    assert with_kg and all(h.why.matched_concepts for h in with_kg[:3])


def test_negated_query_asks_for_the_denial(workspace):
    hits = workspace.search_service().search(SearchRequest(text="no pneumothorax", k=10))
    assert len(hits) == 10
    for hit in hits:
        assert any(
            m["polarity"] == "negated" and "pneumothorax" in m["concept"]["name"]
            for m in hit.why.matched_concepts
        ), hit.id


def test_lay_wording_reaches_the_clinical_concept_with_an_explanation(workspace):
    hits = workspace.search_service().search(SearchRequest(text="enlarged heart", k=5))
    assert hits
    explanation = hits[0].why.matched_concepts[0]
    assert explanation["query_concept"]["name"] == "cardiomegaly"
    assert explanation["sentence"] and explanation["polarity"] == "present"
    assert "ranks" in hits[0].to_dict()["why"] and hits[0].why.ranks.get("concepts")


def test_narrower_concepts_match_through_the_graph(knowledge):
    [constraint] = knowledge.constraints("effusion")
    assert "RID34539" in constraint.narrower  # pleural effusion is a kind of effusion
    path = constraint.narrower["RID34539"]
    assert path and path[0][0] == "RID34539" and path[-1][2] == constraint.concept_id


def test_broader_negation_denies_narrower_query():
    constraint = ConceptConstraint(
        "pleural effusion", "P", "pleural effusion", "present", narrower={"P": ()}, broader=frozenset({"E"})
    )
    says_no_effusion = [{"concept_id": "E", "polarity": "negated", "field": "findings"}]
    assert Knowledge.evidence(constraint, says_no_effusion).denials
    mixed = says_no_effusion + [{"concept_id": "P", "polarity": "present", "field": "impression"}]
    found = Knowledge.evidence(constraint, mixed)
    assert found.matches and not found.denials
    from_history = [{"concept_id": "P", "polarity": "present", "field": "history"}]
    assert not Knowledge.evidence(constraint, from_history).matches  # the indication is not a finding


def test_relink_is_idempotent(workspace):
    collection = workspace.collection()
    before = sum(
        len(v) for v in collection.concepts_of([r.id for r in next(collection.iter_records())]).values()
    )
    assert workspace.relink() == collection.count()
    after = sum(
        len(v) for v in collection.concepts_of([r.id for r in next(collection.iter_records())]).values()
    )
    assert before == after > 0


def test_eval_kg_on_a_small_slice(workspace, tmp_path, shared_data):
    import csv
    import io
    import shutil

    from engine.evaluation.kg_eval import evaluate_kg

    folder = tmp_path / "iu"
    folder.mkdir()
    text = (shared_data / "iu-xray" / "indiana_reports.csv").read_text(encoding="utf-8")
    rows = list(csv.reader(io.StringIO(text)))[:301]
    with open(folder / "indiana_reports.csv", "w", newline="", encoding="utf-8") as handle:
        csv.writer(handle).writerows(rows)
    for name in ("indiana_projections.csv", "annotation_r2gen.json"):
        shutil.copy(shared_data / "iu-xray" / name, folder / name)
    queries = tmp_path / "q.json"
    queries.write_text(
        json.dumps(
            {
                "findings": [
                    {
                        "id": "effusion",
                        "problems": ["Pleural Effusion"],
                        "queries": [
                            {"text": "pleural effusion", "style": "clinical"},
                            {"text": "fluid around the lung", "style": "lay"},
                        ],
                    },
                    {
                        "id": "cardiomegaly",
                        "problems": ["Cardiomegaly"],
                        "queries": [{"text": "enlarged heart", "style": "lay"}],
                    },
                ]
            }
        )
    )
    result = evaluate_kg(workspace, queries, folder)
    assert 0.5 < result["linking"]["all"]["f1"] <= 1.0
    table = result["search"]["all"]
    assert table["queries"] == 3
    assert table["hybrid+kg"]["MAP"] > table["keyword"]["MAP"] > table["random"]["MAP"]
    assert table["hybrid+kg"]["denying_in_top10"] <= table["hybrid"]["denying_in_top10"]
