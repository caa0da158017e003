"""One conformance suite for every VectorIndex backend (faiss kinds, qdrant local mode, Milvus Lite).

Read-only checks share one loaded index per backend (module scope); mutating checks get a fresh one.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from indexer_testkit import BACKEND_CASES, DIM, RECALL, Dataset, exact_search, open_backend, recall

from indexers import DimensionMismatchError, Filter, InvalidInputError, VectorIndex

CASES = list(BACKEND_CASES)

FILTERS = {
    "eq-str": {"modality": "CT"},
    "eq-int": {"age": 42},
    "eq-bool": {"flag": False},
    "eq-float": {"score": 0.35},
    "in-str": {"body_part": ["chest", "knee"]},
    "in-int": {"age": [7, 14, 21, 28]},
    "range": {"age": {"gte": 30, "lt": 60}},
    "range-float": {"score": {"gt": 0.5}},
    "list-eq": {"labels": "m3"},
    "list-in": {"labels": ["l1", "zz"]},
    "and": {"modality": ["CT", "MR"], "age": {"lte": 40}, "labels": "l2"},
}


@pytest.fixture(scope="module", params=CASES)
def loaded(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, big_dataset: Dataset):
    """(case, index) holding the 2,000-vector dataset."""
    index = open_backend(request.param, tmp_path_factory.mktemp(request.param))
    index.add(big_dataset.ids, big_dataset.vectors, big_dataset.payloads)
    yield request.param, index
    index.close()


@pytest.fixture(params=CASES)
def fresh(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, Path, VectorIndex]]:
    """(case, folder, empty index); closed after the test."""
    index = open_backend(request.param, tmp_path)
    yield request.param, tmp_path, index
    index.close()


def _payload(data: Dataset, id_: str) -> dict:
    return data.payloads[data.ids.index(id_)]


# ---------------------------------------------------------------------- read-only, on the loaded index
def test_is_a_vector_index_with_count_and_ids(loaded, big_dataset: Dataset) -> None:
    _, index = loaded
    assert isinstance(index, VectorIndex)
    assert index.dim == DIM
    assert index.count() == len(big_dataset.ids)
    assert index.ids() == set(big_dataset.ids)


def test_recall_at_10_against_exact_search(loaded, big_dataset: Dataset) -> None:
    case, index = loaded
    ids, scores = index.search(big_dataset.queries, 10)
    assert ids.shape == scores.shape == (len(big_dataset.queries), 10)
    assert ids.dtype == object and scores.dtype == np.float32
    assert np.all(np.diff(scores, axis=1) <= 1e-5), "scores must be descending"
    assert recall(ids, exact_search(big_dataset, big_dataset.queries, 10)) >= RECALL[case]


def test_scores_are_cosine_similarities(loaded, big_dataset: Dataset) -> None:
    case, index = loaded
    ids, scores = index.search(big_dataset.vectors[:3] * 5.0, 1)  # unnormalised queries are normalised
    assert ids[:, 0].tolist() == big_dataset.ids[:3]
    tolerance = 0.1 if case == "faiss-ivfpq" else 1e-4
    np.testing.assert_allclose(scores[:, 0], 1.0, atol=tolerance)


@pytest.mark.parametrize("form", list(FILTERS))
def test_each_filter_form(loaded, big_dataset: Dataset, form: str) -> None:
    case, index = loaded
    filter = Filter.from_dict(FILTERS[form])
    queries = big_dataset.queries[:5]
    matching = sum(filter.matches(p) for p in big_dataset.payloads)
    assert matching >= 10, "the fixture must give every form at least k matches"
    ids, scores = index.search(queries, 10, filter=filter)
    assert all(filter.matches(_payload(big_dataset, i)) for i in ids.ravel()), "returned a non-matching id"
    assert (ids != "").sum(axis=1).tolist() == [10] * len(queries)
    assert recall(ids, exact_search(big_dataset, queries, 10, filter)) >= min(RECALL[case], 0.9)


def test_filtered_search_returns_k_matches_outside_the_unfiltered_top_k(loaded, big_dataset: Dataset) -> None:
    case, index = loaded
    rare = Filter.from_dict({"group": "rare"})
    queries = big_dataset.queries[:4]
    unfiltered, _ = index.search(queries, 10)
    assert not any(_payload(big_dataset, i).get("group") == "rare" for i in unfiltered.ravel())
    ids, scores = index.search(queries, 10, filter=rare)
    assert (ids != "").all() and np.isfinite(scores).all()
    assert all(_payload(big_dataset, i)["group"] == "rare" for i in ids.ravel())
    assert recall(ids, exact_search(big_dataset, queries, 10, rare)) >= (
        0.7 if case == "faiss-ivfpq" else 1.0
    )


def test_padding_when_fewer_than_k_match(loaded, big_dataset: Dataset) -> None:
    _, index = loaded
    ids, scores = index.search(big_dataset.queries[:2], 10, filter=Filter.from_dict({"tag": "three"}))
    assert sorted(ids[0, :3].tolist()) == ["doc-11", "doc-22", "doc-33"]
    assert ids[:, 3:].tolist() == [[""] * 7] * 2
    assert np.isneginf(scores[:, 3:]).all() and np.isfinite(scores[:, :3]).all()


def test_no_match_and_missing_field_give_only_padding(loaded, big_dataset: Dataset) -> None:
    _, index = loaded
    for spec in ({"modality": "PET"}, {"no_such_field": "x"}, {"age": {"gt": 1000}}):
        ids, scores = index.search(big_dataset.queries[:1], 5, filter=Filter.from_dict(spec))
        assert ids.tolist() == [[""] * 5] and np.isneginf(scores).all()


def test_single_query_vector_and_k_above_count(loaded, big_dataset: Dataset) -> None:
    _, index = loaded
    ids, _ = index.search(big_dataset.vectors[5], 3)
    assert ids.shape == (1, 3) and ids[0, 0] == "doc-5"


def test_wrong_dimension_is_refused(loaded) -> None:
    _, index = loaded
    with pytest.raises(DimensionMismatchError, match=rf"vector dim 3 != index dim {DIM} for index at \S+"):
        index.search(np.ones((1, 3), dtype=np.float32), 5)
    with pytest.raises(DimensionMismatchError, match="vector dim 3"):
        index.add(["x"], np.ones((1, 3), dtype=np.float32))


# ---------------------------------------------------------------------- mutations, on a fresh index
def test_empty_index_searches_to_padding(fresh) -> None:
    _, _, index = fresh
    ids, scores = index.search(np.ones((2, DIM), dtype=np.float32), 4)
    assert ids.tolist() == [[""] * 4] * 2 and np.isneginf(scores).all()
    assert index.count() == 0 and index.ids() == set() and index.delete(["nope"]) == 0


def test_upsert_replaces_vector_and_payload_and_replay_is_idempotent(fresh, small_dataset: Dataset) -> None:
    case, _, index = fresh
    data = small_dataset
    index.add(data.ids, data.vectors, data.payloads)
    before, before_scores = index.search(data.queries, 10)
    index.add(data.ids, data.vectors, data.payloads)  # replaying a change log
    assert index.count() == len(data.ids)
    after, after_scores = index.search(data.queries, 10)
    assert recall(after, before.tolist()) >= 0.9
    new_vector = np.random.default_rng(3).standard_normal((1, DIM)).astype(np.float32)
    index.add(
        ["doc-7", "doc-7"],
        np.vstack([data.vectors[:1], new_vector]),
        [{"modality": "A"}, {"modality": "NEW"}],
    )
    assert index.count() == len(data.ids)
    ids, scores = index.search(new_vector, 1)
    assert ids[0, 0] == "doc-7" and scores[0, 0] > (0.3 if case == "faiss-ivfpq" else 0.99)
    ids, _ = index.search(new_vector, 5, filter=Filter.from_dict({"modality": "NEW"}))
    assert ids[0].tolist() == ["doc-7", "", "", "", ""]
    old = Filter.from_dict({"modality": data.payloads[7]["modality"]})
    assert "doc-7" not in index.search(data.vectors[7], 50, filter=old)[0]


def test_delete_counts_only_removed_ids(fresh, small_dataset: Dataset) -> None:
    _, _, index = fresh
    data = small_dataset
    index.add(data.ids, data.vectors, data.payloads)
    gone = data.ids[:5]
    assert index.delete([*gone, "unknown-1", "unknown-2"]) == 5
    assert index.delete(gone) == 0
    assert index.count() == len(data.ids) - 5 and index.ids() == set(data.ids[5:])
    ids, _ = index.search(data.vectors[:5], 10)
    assert not set(ids.ravel()) & set(gone)
    assert index.delete(data.ids) == len(data.ids) - 5 and index.count() == 0
    assert (index.search(data.vectors[:1], 3)[0] == "").all()


def test_save_close_reopen_gives_the_same_results(fresh, small_dataset: Dataset) -> None:
    case, folder, index = fresh
    data = small_dataset
    index.add(data.ids, data.vectors, data.payloads)
    index.delete(data.ids[:10])
    index.add(data.ids[10:15], data.vectors[10:15], [{"modality": "NEW"}] * 5)
    query_filter = Filter.from_dict({"modality": ["NEW", "CT"]})
    expected = index.search(data.queries, 10), index.search(data.queries, 10, filter=query_filter)
    index.save()
    index.close()
    reopened = open_backend(case, folder)
    try:
        assert reopened.count() == len(data.ids) - 10 and reopened.ids() == set(data.ids[10:])
        got = reopened.search(data.queries, 10), reopened.search(data.queries, 10, filter=query_filter)
        for (want_ids, want_scores), (got_ids, got_scores) in zip(expected, got, strict=True):
            assert got_ids.tolist() == want_ids.tolist()
            np.testing.assert_allclose(got_scores, want_scores, rtol=1e-5, atol=1e-5)
    finally:
        reopened.close()


def test_reopen_with_another_dim_is_refused(fresh, small_dataset: Dataset) -> None:
    case, folder, index = fresh
    index.add(small_dataset.ids[:3], small_dataset.vectors[:3])
    index.save()
    index.close()
    name, options = BACKEND_CASES[case]
    import indexers

    with pytest.raises(DimensionMismatchError, match=f"not {DIM + 1}"):
        indexers.create(name, dim=DIM + 1, **options(folder))


@pytest.mark.parametrize(
    ("ids", "vectors", "payloads", "message"),
    [
        (["a", "b"], np.ones((1, DIM)), None, "2 ids but 1 vectors"),
        ([""], np.ones((1, DIM)), None, "non-empty str"),
        (["a"], np.ones((1, DIM)), [{"bad key": 1}], "invalid field name"),
        (["a"], np.ones((1, DIM)), [{"_id": "x"}], "invalid field name"),
        (["a"], np.ones((1, DIM)), [{"nested": {"x": 1}}], "values must be"),
        (["a"], np.full((1, DIM), np.nan), None, "NaN"),
    ],
)
def test_bad_adds_are_refused_with_a_reason(fresh, ids, vectors, payloads, message) -> None:
    _, _, index = fresh
    with pytest.raises(InvalidInputError, match=message):
        index.add(ids, vectors, payloads)
    assert index.count() == 0
    with pytest.raises(InvalidInputError, match="k=0"):
        index.search(np.ones((1, DIM)), 0)
