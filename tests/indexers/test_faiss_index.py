"""FAISS specifics: IVF staging and training rules, HNSW tombstones, the exact fallback, search parameters,
the GPU decision (on a CPU, with a monkeypatched GPU count) and the on-disk format."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
from indexer_testkit import DIM, Dataset, exact_search, recall

faiss = pytest.importorskip("faiss")

from indexers import (  # noqa: E402
    BackendUnavailableError,
    CorruptIndexError,
    Filter,
    IndexerError,
    OptionsError,
    StorageError,
)
from indexers import faiss_build as build  # noqa: E402
from indexers.faiss_index import FaissIndex  # noqa: E402

RARE = Filter.from_dict({"group": "rare"})


def test_auto_nlist_and_pq_m_rules() -> None:
    assert build.auto_nlist(100_000, None) == round(4 * 100_000**0.5) == 1265
    assert build.auto_nlist(2_000, None) == 2_000 // 39  # shrunk: >= 39 training points per list
    assert build.auto_nlist(10, 64) == 1
    assert (
        build.auto_pq_m(512, None) == 64
        and build.auto_pq_m(384, None) == 48
        and build.auto_pq_m(64, None) == 8
    )
    with pytest.raises(OptionsError, match="pq_m=7 does not divide dim 64"):
        build.auto_pq_m(64, 7)
    with pytest.raises(OptionsError, match="does not divide"):
        FaissIndex(dim=64, kind="ivfpq", pq_m=7)


@pytest.mark.parametrize("kind", ["ivfflat", "ivfpq"])
def test_ivf_serves_tiny_n_exactly_then_trains(kind: str, small_dataset: Dataset) -> None:
    data = small_dataset
    index = FaissIndex(dim=DIM, kind=kind, min_train=256)
    index.add(data.ids[:5], data.vectors[:5], data.payloads[:5])
    assert not index.trained
    ids, scores = index.search(data.vectors[:5], 2)
    assert ids[:, 0].tolist() == data.ids[:5] and ids[0, 1] != ""
    index.add(data.ids[5:], data.vectors[5:], data.payloads[5:])
    assert index.trained and index.count() == len(data.ids)
    ids, _ = index.search(data.queries, 10)
    assert recall(ids, exact_search(data, data.queries, 10)) >= (0.3 if kind == "ivfpq" else 0.9)


def test_ivf_trains_at_2_pow_nbits_at_least() -> None:
    assert build.train_threshold(build.FaissOptions(kind="ivfpq", min_train=10)) == 256
    assert build.train_threshold(build.FaissOptions(kind="ivfflat", min_train=10)) == 10


def test_hnsw_tombstones_are_never_returned_and_compaction_rebuilds(small_dataset: Dataset) -> None:
    data = small_dataset
    index = FaissIndex(dim=DIM, kind="hnsw", compact_ratio=0.25)
    index.add(data.ids, data.vectors, data.payloads)
    index.delete(data.ids[:30])
    assert index._index.ntotal == len(data.ids)  # 30 tombstones kept (10% < 25%)
    for query_filter in (None, Filter.from_dict({"modality": "CT"})):
        ids, _ = index.search(data.vectors[:30], 5, filter=query_filter)
        assert not set(ids.ravel()) & set(data.ids[:30])
    index.delete(data.ids[30:90])
    assert index._index.ntotal == index.count() == len(data.ids) - 90  # compacted
    ids, _ = index.search(data.vectors[90:95], 1)
    assert ids[:, 0].tolist() == data.ids[90:95]


@pytest.mark.parametrize(("kind", "knob"), [("hnsw", {"ef_search": 16}), ("ivfflat", {"nprobe": 1})])
def test_short_filtered_rows_are_redone_exactly(
    kind: str, knob: dict, big_dataset: Dataset, caplog: pytest.LogCaptureFixture
) -> None:
    """With exact_below=1 the ANN path runs with a 15-vector selector and comes back short; the retry fills k."""
    caplog.set_level(logging.DEBUG, logger="indexers.faiss_index")
    data = big_dataset
    index = FaissIndex(dim=DIM, kind=kind, min_train=256, exact_below=1, **knob)
    index.add(data.ids, data.vectors, data.payloads)
    ids, scores = index.search(data.queries, 10, filter=RARE)
    assert (ids != "").all() and np.isfinite(scores).all()
    assert recall(ids, exact_search(data, data.queries, 10, RARE)) == 1.0
    assert "came back short" in caplog.text  # the ANN path alone would not have filled k


def test_set_search_params_trades_recall(big_dataset: Dataset) -> None:
    data = big_dataset
    index = FaissIndex(dim=DIM, kind="ivfflat", min_train=256)
    index.add(data.ids, data.vectors, data.payloads)
    expected = exact_search(data, data.queries, 10)
    index.set_search_params(nprobe=1)
    low = recall(index.search(data.queries, 10)[0], expected)
    index.set_search_params(nprobe=10_000)  # capped at nlist: exhaustive
    assert recall(index.search(data.queries, 10)[0], expected) == 1.0 >= low
    with pytest.raises(OptionsError, match="nprobe"):
        index.set_search_params(nprobe=-1)


def test_gpu_decision() -> None:
    assert build.decide_gpu("auto", "flat", 0) is False
    assert build.decide_gpu("auto", "ivfpq", 2) is True
    assert build.decide_gpu("auto", "hnsw", 2) is False
    assert build.decide_gpu("never", "flat", 2) is False
    with pytest.raises(BackendUnavailableError, match=r"medsearch\[gpu\]"):
        build.decide_gpu("always", "flat", 0)
    with pytest.raises(OptionsError, match="no GPU HNSW"):
        build.decide_gpu("always", "hnsw", 1)


def test_gpu_copy_is_made_lazily_and_dropped_on_change(
    monkeypatch: pytest.MonkeyPatch, small_dataset: Dataset
) -> None:
    copies: list[object] = []

    def fake_to_gpu(index: object) -> object:
        copies.append(index)
        return faiss.clone_index(index)

    monkeypatch.setattr(faiss, "get_num_gpus", lambda: 1, raising=False)
    monkeypatch.setattr(faiss, "index_cpu_to_all_gpus", fake_to_gpu, raising=False)
    data = small_dataset
    index = FaissIndex(dim=DIM, kind="flat")
    index.add(data.ids, data.vectors, data.payloads)
    assert copies == []
    index.search(data.queries, 3)
    index.search(data.queries, 3)
    assert len(copies) == 1
    index.search(data.queries, 3, filter=Filter.from_dict({"modality": "CT"}))  # selectors stay on the CPU
    assert len(copies) == 1
    index.delete(data.ids[:1])
    ids, _ = index.search(data.vectors[:1], 1)
    assert len(copies) == 2 and ids[0, 0] != data.ids[0]
    monkeypatch.setattr(faiss, "get_num_gpus", lambda: 0, raising=False)
    with pytest.raises(BackendUnavailableError, match="sees no GPU"):
        FaissIndex(dim=DIM, use_gpu="always")


def test_saved_folder_holds_one_index_file_and_a_manifest(tmp_path: Path, small_dataset: Dataset) -> None:
    data = small_dataset
    index = FaissIndex(dim=DIM, kind="hnsw", path=tmp_path)
    index.add(data.ids, data.vectors, data.payloads)
    index.save()
    index.add(["extra"], data.vectors[:1])
    index.save()
    files = sorted(p.name for p in tmp_path.iterdir() if p.name != ".lock")
    assert len(files) == 2 and files[1] == "manifest.json" and files[0].startswith("index-")
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["kind"] == "hnsw" and manifest["index_file"] == files[0] and len(manifest["ids"]) == 301
    (tmp_path / "index-zzzz-leftover.faiss").write_bytes(b"partial write of a crashed save")
    assert FaissIndex(dim=DIM, kind="hnsw", path=tmp_path).count() == 301  # the manifest names the live file


def test_reopen_errors_name_the_fix(tmp_path: Path, small_dataset: Dataset) -> None:
    index = FaissIndex(dim=DIM, kind="flat", path=tmp_path)
    index.add(small_dataset.ids[:3], small_dataset.vectors[:3])
    index.save()
    with pytest.raises(OptionsError, match="pass kind='flat'"):
        FaissIndex(dim=DIM, kind="hnsw", path=tmp_path)
    (tmp_path / "manifest.json").write_text("{not json")
    with pytest.raises(StorageError, match="cannot read index manifest"):
        FaissIndex(dim=DIM, path=tmp_path)
    with pytest.raises(OptionsError, match="lives in memory"):
        FaissIndex(dim=DIM).save()


def test_damaged_files_raise_corrupt_index_error_naming_the_file(
    tmp_path: Path, small_dataset: Dataset
) -> None:
    index = FaissIndex(dim=DIM, kind="flat", path=tmp_path)
    index.add(small_dataset.ids[:20], small_dataset.vectors[:20])
    index.save()
    data_file = tmp_path / json.loads((tmp_path / "manifest.json").read_text())["index_file"]
    data_file.write_bytes(data_file.read_bytes()[:100])  # a truncated write
    with pytest.raises(CorruptIndexError, match=f"cannot read faiss index {data_file}"):
        FaissIndex(dim=DIM, path=tmp_path)
    data_file.unlink()
    with pytest.raises(CorruptIndexError, match="is missing"):
        FaissIndex(dim=DIM, path=tmp_path)
    assert issubclass(CorruptIndexError, StorageError)


def _save_repeatedly(folder: str, seed: int, rounds: int) -> None:
    rng = np.random.default_rng(seed)
    for round_ in range(rounds):
        index = FaissIndex(dim=DIM, kind="flat", path=folder)  # loads the other writer's latest save
        index.add([f"w{seed}-{round_}"], rng.normal(size=(1, DIM)).astype(np.float32))
        index.save()


def test_two_processes_saving_one_folder_never_leave_it_unreadable(tmp_path: Path) -> None:
    """Each save prunes older generations: without the folder lock a save could prune the file that another
    process's newer manifest names (and a load could read a manifest whose file was just pruned)."""
    import multiprocessing

    context = multiprocessing.get_context("spawn")
    writers = [context.Process(target=_save_repeatedly, args=(str(tmp_path), s, 40)) for s in (1, 2)]
    for writer in writers:
        writer.start()
    reads = 0
    while any(w.is_alive() for w in writers):
        FaissIndex(dim=DIM, kind="flat", path=tmp_path)  # raises CorruptIndexError on a pruned file
        reads += 1
    for writer in writers:
        writer.join()
    assert [w.exitcode for w in writers] == [0, 0] and reads > 0
    final = FaissIndex(dim=DIM, kind="flat", path=tmp_path)
    assert final.count() >= 40  # at least the last writer's own vectors; nothing unreadable


def test_untrained_ivf_persists_and_trains_after_reopen(tmp_path: Path, small_dataset: Dataset) -> None:
    data = small_dataset
    index = FaissIndex(dim=DIM, kind="ivfflat", min_train=256, path=tmp_path)
    index.add(data.ids[:100], data.vectors[:100], data.payloads[:100])
    index.save()
    reopened = FaissIndex(dim=DIM, kind="ivfflat", min_train=256, path=tmp_path)
    assert not reopened.trained and reopened.count() == 100
    reopened.add(data.ids[100:], data.vectors[100:], data.payloads[100:])
    assert reopened.trained and reopened.count() == len(data.ids)


def test_closed_index_refuses_use() -> None:
    index = FaissIndex(dim=4)
    index.close()
    with pytest.raises(IndexerError, match="closed"):
        index.search(np.ones((1, 4)), 1)


def test_failed_gpu_copy_falls_back_to_the_cpu(
    monkeypatch: pytest.MonkeyPatch, small_dataset: Dataset
) -> None:
    def failing_to_gpu(index: object) -> object:
        raise RuntimeError("out of GPU memory")

    monkeypatch.setattr(faiss, "get_num_gpus", lambda: 1, raising=False)
    monkeypatch.setattr(faiss, "index_cpu_to_all_gpus", failing_to_gpu, raising=False)
    index = FaissIndex(dim=DIM, kind="ivfflat", min_train=256)
    index.add(small_dataset.ids, small_dataset.vectors)
    ids, _ = index.search(small_dataset.vectors[:2], 1)
    assert ids[:, 0].tolist() == small_dataset.ids[:2] and not index._use_gpu
