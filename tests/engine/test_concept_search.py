"""The concept ranker's posting-index fast path against the per-record reference it replaced (same ranking,
denials and explanations), including after deletes and new ingest."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pytest

import engine.concept_search
import engine.search
from engine.collection import Collection
from engine.concept_search import ConceptRanking, _evidence, _explain, concept_postings, rank_by_concepts
from engine.ingest import ingest_records
from engine.knowledge import EVIDENCE_FIELDS, Knowledge
from engine.search import SearchRequest
from engine.workspace import Workspace
from tests.engine.conftest import make_settings

QUERIES = (
    "pleural effusion",
    "no pneumothorax",
    "enlarged heart",
    "cardiomegaly",
    "atelectasis at the lung bases",
    "calcified granuloma",
    "lung opacity",
    "clear lungs without consolidation",
    "no pleural effusion or pneumothorax",
    "degenerative changes of the spine",
    "normal chest x-ray",
)


def reference_rank_by_concepts(
    collection: Collection,
    knowledge: Knowledge,
    text: str,
    allowed: set[str] | None,
    base_ranks: Mapping[str, int],
) -> ConceptRanking:
    """The ranker before the posting index: every mention read from SQLite, each record judged in Python."""
    constraints = knowledge.constraints(text)
    result = ConceptRanking(constraints, denied=set(), why={})
    if not constraints:
        return result
    judged = [(c, frozenset(c.narrower), frozenset(c.all_ids)) for c in constraints]
    wanted = sorted(set().union(*(ids for _, _, ids in judged)))
    scores: dict[str, tuple[int, int]] = {}
    why: dict[str, list[dict[str, Any]]] = {}
    for record_id, mentions in collection.records_mentioning(wanted).items():
        if allowed is not None and record_id not in allowed:
            continue
        said = [m for m in mentions if m.get("field") in EVIDENCE_FIELDS]
        matched, strength, explained = 0, 0, []
        for constraint, narrower, all_ids in judged:
            matches, denied = _evidence(constraint, said, narrower, all_ids)
            if denied:
                result.denied.add(record_id)  # type: ignore[attr-defined]
            if matches:
                matched += 1
                strength += len(matches)
                explained.append(_explain(knowledge, constraint, dict(matches[0])))
        if matched and record_id not in result.denied:
            scores[record_id] = (matched, strength)
            why[record_id] = explained
    unranked = len(base_ranks) + 1
    order = sorted(scores, key=lambda r: (-scores[r][0], base_ranks.get(r, unranked), -scores[r][1], r))
    result.ranked = [(record_id, float(scores[record_id][0])) for record_id in order]
    result.why = why
    return result


@pytest.fixture(scope="module")
def workspace(tmp_path_factory, iu_records, minilm, knowledge):
    ws = Workspace(make_settings(tmp_path_factory.mktemp("concept-home")))
    ws._encoders["minilm"] = minilm
    ws._knowledge = knowledge
    ingest_records(
        ws.collection(create=True),
        iu_records,
        {"text": minilm},
        source="iu-xray",
        linker=knowledge.link_records,
        progress=False,
    )
    yield ws
    ws.close()


def _base_ranks(service, text: str, k: int = 10) -> dict[str, int]:
    """Best rank of each record in the keyword and dense rankings of a hybrid query (as SearchService does)."""
    request = SearchRequest(text=text, k=k)
    rankings = {"keyword": service._keyword_ranking(request), **service._dense_rankings([request])[0]}
    ranks: dict[str, int] = {}
    for ranked in rankings.values():
        for rank, (doc_id, _) in enumerate(ranked, start=1):
            ranks[doc_id] = min(rank, ranks.get(doc_id, rank))
    return ranks


def _assert_same(fast: ConceptRanking, slow: ConceptRanking, keep: int | None = None) -> None:
    assert len(fast.ranks) == len(fast.ranked)
    if keep is None:
        assert [r for r, _ in fast.ranked] == [r for r, _ in slow.ranked]
        assert fast.ranks == list(range(1, len(fast.ranked) + 1))
    else:  # records of the full ranking at their ranks in it, in order
        assert fast.ranks == sorted(set(fast.ranks))
    expected = [slow.ranked[rank - 1] for rank in fast.ranks]
    assert [r for r, _ in fast.ranked] == [r for r, _ in expected]
    for (_, got), (_, want) in zip(fast.ranked, expected):
        assert abs(got - want) <= 1e-9
    assert set(fast.denied) == set(slow.denied)
    assert all(record_id in fast.denied for record_id in slow.denied)
    for record_id, _ in fast.ranked:
        assert fast.why[record_id] == slow.why[record_id], record_id


def _compare_queries(ws: Workspace, knowledge: Knowledge, queries: Sequence[str], allowed=None) -> int:
    service = ws.search_service()
    collection = ws.collection()
    compared = 0
    for text in queries:
        base = _base_ranks(service, text)
        slow = reference_rank_by_concepts(collection, knowledge, text, allowed, base)
        _assert_same(rank_by_concepts(collection, knowledge, text, allowed, base), slow)
        for keep in (0, 1, 5, 10):
            fast = rank_by_concepts(collection, knowledge, text, allowed, base, keep=keep)
            _assert_same(fast, slow, keep)
            ranked = [r for r, _ in fast.ranked]
            assert {r for r, _ in slow.ranked if r in base} <= set(ranked)
            assert len([r for r in ranked if r not in base]) >= min(keep, len(slow.ranked) - len(base))
        compared += bool(slow.ranked)
    return compared


def test_fast_ranker_equals_the_reference(workspace, knowledge):
    assert _compare_queries(workspace, knowledge, QUERIES) >= len(QUERIES) - 2


def test_fast_ranker_equals_the_reference_under_a_filter(workspace, knowledge, iu_records):
    allowed = {r.id for r in iu_records[::3]}
    assert _compare_queries(workspace, knowledge, QUERIES[:4], allowed) >= 3


def _hits(service, text: str, k: int) -> list[tuple[Any, ...]]:
    return [
        (h.id, h.score, h.why.ranks, h.why.scores, h.why.matched_concepts)
        for h in service.search(SearchRequest(text=text, k=k))
    ]


def _assert_search_unchanged(monkeypatch, service, queries: Sequence[str]) -> None:
    """Hybrid hits (ids, scores, ranks, explanations) with the capped fast ranker == with the reference."""
    for k in (3, 10):
        fast = {text: _hits(service, text, k) for text in queries}
        with monkeypatch.context() as patch:
            patch.setattr(engine.search, "rank_by_concepts", _reference_keeping_all)
            slow = {text: _hits(service, text, k) for text in queries}
        assert fast == slow


def _reference_keeping_all(collection, knowledge, text, allowed, base_ranks, keep=None):
    return reference_rank_by_concepts(collection, knowledge, text, allowed, base_ranks)


def test_hybrid_hits_unchanged_by_the_candidate_cap(workspace, monkeypatch):
    _assert_search_unchanged(monkeypatch, workspace.search_service(), QUERIES)


def test_stays_correct_after_deletes_and_new_ingest(tmp_path, iu_records, minilm, knowledge, monkeypatch):
    ws = Workspace(make_settings(tmp_path))
    ws._encoders["minilm"] = minilm
    ws._knowledge = knowledge
    collection = ws.collection(create=True)
    first, later = iu_records[:200], iu_records[200:]
    ingest_records(
        collection, first, {"text": minilm}, source="iu-xray", linker=knowledge.link_records, progress=False
    )
    queries = ("pleural effusion", "no pneumothorax", "enlarged heart")
    _compare_queries(ws, knowledge, queries)  # builds the posting index

    ranked = rank_by_concepts(collection, knowledge, "pleural effusion", None, {}).ranked
    gone = [record_id for record_id, _ in ranked[:5]]
    assert collection.delete(gone) == len(gone)
    ingest_records(
        collection, later, {"text": minilm}, source="iu-xray", linker=knowledge.link_records, progress=False
    )
    assert _compare_queries(ws, knowledge, queries) == len(queries)
    for text in queries:
        fast = rank_by_concepts(collection, knowledge, text, None, {})
        assert not set(gone) & {r for r, _ in fast.ranked} and not set(gone) & set(fast.denied)
        assert not set(gone) & {h.id for h in ws.search_service().search(SearchRequest(text=text, k=50))}
    newly_ranked = {
        i for i, _ in rank_by_concepts(collection, knowledge, "pleural effusion", None, {}).ranked
    }
    assert newly_ranked & {r.id for r in later}
    assert concept_postings(collection).dead > 0  # caught up from the change log, not rebuilt
    _assert_search_unchanged(monkeypatch, ws.search_service(), queries)

    collection.delete([r.id for r in first[:120]])  # most rows now dead: the index is rebuilt from scratch
    assert _compare_queries(ws, knowledge, queries) >= 1
    assert concept_postings(collection).dead == 0
    ws.close()


def test_column_sort_equals_the_packed_key(workspace, knowledge, monkeypatch):
    """The fallback for keys that would overflow int64 (sorting by columns) ranks and cuts alike."""
    monkeypatch.setattr(engine.concept_search, "_PACKED_KEY_LIMIT", 0)
    assert _compare_queries(workspace, knowledge, QUERIES[:5]) >= 4
