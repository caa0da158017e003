"""BM25Index: tokenisation, ranking on a tiny corpus and on real IU X-ray reports, allowed ids, save/load."""

from __future__ import annotations

import csv
import itertools
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("bm25s")

from indexers import BackendUnavailableError, InvalidInputError, OptionsError  # noqa: E402
from indexers import keyword as keyword_module  # noqa: E402
from indexers.keyword import BM25Index, tokenize  # noqa: E402

CORPUS = {
    "r1": "Large right pleural effusion. No pneumothorax.",
    "r2": "Chest X-ray: cardiomegaly with small pleural effusion.",
    "r3": "T2-weighted MRI of the brain shows no acute infarct.",
    "r4": "Normal chest xray. Heart size normal.",
    "r5": "Knee radiograph: joint effusion.",
}


@pytest.fixture
def tiny() -> BM25Index:
    index = BM25Index(stem=False)
    index.index(list(CORPUS), list(CORPUS.values()))
    return index


def test_tokenize_keeps_clinical_tokens() -> None:
    assert tokenize("Chest X-ray, T2-weighted; no effusion.") == [
        "chest",
        "xray",
        "ray",
        "t2weighted",
        "t2",
        "weighted",
        "effusion",
    ]
    assert tokenize("the and of a") == []


def test_ranking_on_a_tiny_corpus(tiny: BM25Index) -> None:
    ids, scores = tiny.search(["pleural effusion", "x-ray", "t2", "femur fracture"], 3)
    assert ids.shape == scores.shape == (4, 3) and scores.dtype == np.float32
    assert ids[0].tolist() == ["r1", "r2", "r5"]  # both terms beat one term; shorter r1 beats r2
    assert np.all(np.diff(scores[0]) <= 0)
    assert set(ids[1, :2]) == {"r2", "r4"}  # "x-ray" meets "xray"
    assert ids[2].tolist() == ["r3", "", ""] and np.isneginf(scores[2, 1:]).all()
    assert ids[3].tolist() == ["", "", ""]  # no shared term: nothing, rather than zero-score documents


def test_allowed_restricts_and_still_fills_k(tiny: BM25Index) -> None:
    ids, _ = tiny.search(["effusion"], 2, allowed={"r5", "r2", "r3"})
    assert ids[0].tolist() == ["r5", "r2"]  # r1 would rank first without the restriction
    assert tiny.search(["effusion"], 2, allowed=set())[0].tolist() == [["", ""]]
    assert tiny.search(["effusion"], 2, allowed={"unknown"})[0].tolist() == [["", ""]]


def test_save_and_load(tmp_path: Path, tiny: BM25Index) -> None:
    index = BM25Index(tmp_path / "bm25", stem=False)
    index.index(list(CORPUS), list(CORPUS.values()))
    expected = index.search(["pleural effusion", "brain"], 5)
    index.save()
    index.index(["only"], ["pleural effusion"])
    index.save()  # a second generation replaces the first
    assert len(list((tmp_path / "bm25").glob("bm25-*"))) == 1
    index.index(list(CORPUS), list(CORPUS.values()))
    index.save()
    loaded = BM25Index(tmp_path / "bm25")
    assert loaded.count() == 5 and loaded.ids() == set(CORPUS) and not loaded.stemmed
    got = loaded.search(["pleural effusion", "brain"], 5)
    assert got[0].tolist() == expected[0].tolist()
    np.testing.assert_allclose(got[1], expected[1])


def test_empty_corpus_duplicates_and_bad_input(tmp_path: Path) -> None:
    index = BM25Index(tmp_path)
    assert index.search(["anything"], 2)[0].tolist() == [["", ""]]
    index.save()
    assert BM25Index(tmp_path).count() == 0
    index.index(["a", "a", "b"], ["old text", "new effusion", None])
    assert index.count() == 2 and index.search(["effusion"], 1)[0].tolist() == [["a"]]
    with pytest.raises(InvalidInputError, match="2 ids but 1 texts"):
        index.index(["a", "b"], ["x"])
    with pytest.raises(InvalidInputError, match="wrap it as"):
        index.search("effusion", 1)  # type: ignore[arg-type]
    with pytest.raises(OptionsError, match="lives in memory"):
        BM25Index().save()


def test_stemming_is_used_when_available(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(keyword_module, "load_stemmer", lambda: lambda words: [w.rstrip("s") for w in words])
    index = BM25Index()
    assert index.stemmed
    index.index(["a", "b"], ["bilateral effusions", "nodule"])
    assert index.search(["effusion"], 1)[0].tolist() == [["a"]]
    monkeypatch.setattr(keyword_module, "load_stemmer", lambda: None)
    assert not BM25Index().stemmed
    with pytest.raises(BackendUnavailableError, match="pip install PyStemmer"):
        BM25Index(stem=True)


def test_real_iu_xray_reports(shared_data: Path) -> None:
    with open(shared_data / "iu-xray" / "indiana_reports.csv", newline="", encoding="utf-8") as handle:
        rows = list(itertools.islice(csv.DictReader(handle), 300))
    texts = {row["uid"]: f"{row['findings']} {row['impression']}".strip() for row in rows}
    index = BM25Index()
    index.index(list(texts), list(texts.values()))
    assert index.count() == len(texts)
    ids, scores = index.search(["cardiomegaly", "pneumothorax"], 10)
    assert all("cardiomegaly" in texts[i].lower() for i in ids[0])
    assert all("pneumothorax" in texts[i].lower() for i in ids[1]) and np.isfinite(scores).all()
    cardiomegaly = {uid for uid, text in texts.items() if "cardiomegaly" in text.lower()}
    allowed = set(list(cardiomegaly)[:4]) | {uid for uid in texts if "effusion" not in texts[uid].lower()}
    restricted, _ = index.search(["cardiomegaly"], 10, allowed=allowed)
    assert {i for i in restricted[0] if i} == cardiomegaly & allowed


def _reference_top(scores: np.ndarray, k: int) -> list[tuple[int, float]]:
    """Positive scores, best first, equal scores in document order: a plain sort."""
    ranked = sorted((i for i in range(len(scores)) if scores[i] > 0), key=lambda i: (-scores[i], i))
    return [(i, float(scores[i])) for i in ranked[:k]]


@pytest.mark.parametrize("k", [1, 3, 10, 50, 200])
def test_top_positive_matches_a_plain_sort_with_ties_and_zeros(k):
    rng = np.random.default_rng(0)
    for zeros in (0.0, 0.5, 0.95):  # mostly-zero arrays are the case numpy's partition is slow on
        scores = rng.choice([0.5, 1.0, 1.5, 2.0], size=1000).astype(np.float32)  # many ties
        scores[rng.random(1000) < zeros] = 0
        documents, best = keyword_module.top_positive(scores, k)
        assert list(zip(documents.tolist(), best.tolist())) == _reference_top(scores, k)
    documents, best = keyword_module.top_positive(np.zeros(10, dtype=np.float32), k)
    assert len(documents) == len(best) == 0


def test_equal_scores_come_in_document_order():
    index = BM25Index(stem=False)
    ids = [f"copy{i}" for i in range(30)]
    index.index(ids, ["small left pleural effusion"] * 30)  # identical texts score alike
    found, scores = index.search(["pleural effusion"], 10)
    assert list(found[0]) == ids[:10]
    assert len(set(scores[0].tolist())) == 1
    found, _ = index.search(["pleural effusion"], 5, allowed=set(ids[10:]))
    assert list(found[0]) == ids[10:15]


def test_a_query_without_corpus_terms_finds_nothing(tiny):
    found, scores = tiny.search(["zebra", "the of and"], 3)
    assert (found == "").all() and np.isneginf(scores).all()


def _save_repeatedly(folder: str, seed: int, rounds: int) -> None:
    texts = ["pleural effusion", "no pneumothorax", "cardiomegaly with edema", "clear lungs"]
    for round_ in range(rounds):
        index = BM25Index(path=folder)  # loads the other writer's latest save
        index.index([f"w{seed}-{round_}-{i}" for i in range(len(texts))], texts)
        index.save()


def test_two_processes_saving_one_folder_never_leave_it_unreadable(tmp_path: Path) -> None:
    """Each save prunes older generations: without the folder lock one save could prune the folder that another
    process's newer manifest names, and a load could read a manifest whose folder was just pruned."""
    import multiprocessing

    context = multiprocessing.get_context("spawn")
    writers = [context.Process(target=_save_repeatedly, args=(str(tmp_path), s, 30)) for s in (1, 2)]
    for writer in writers:
        writer.start()
    reads = 0
    while any(w.is_alive() for w in writers):
        BM25Index(path=tmp_path)  # raises StorageError on a pruned generation
        reads += 1
    for writer in writers:
        writer.join()
    assert [w.exitcode for w in writers] == [0, 0] and reads > 0
    assert BM25Index(path=tmp_path).count() == 4
