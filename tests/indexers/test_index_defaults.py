"""The size-based default FAISS index (`indexers.defaults`) and the GPU decision it feeds."""

from __future__ import annotations

import pytest

from indexers import defaults
from indexers.defaults import auto_faiss_options, choose_faiss_options, ivf_options


@pytest.mark.parametrize("n", [0, 1, 2_000, 50_000])
def test_small_collections_stay_exact(n):
    assert choose_faiss_options(n, 512) == {"kind": "flat"}


def test_threshold_scales_with_dimension():
    assert choose_faiss_options(60_000, 384) == {"kind": "flat"}  # 60k x 384 floats < 50k x 512
    assert choose_faiss_options(60_000, 512)["kind"] == "ivfflat"


@pytest.mark.parametrize(
    ("n", "nlist", "nprobe", "min_train"),
    [(100_000, 512, 32, 32_768), (1_000_000, 2048, 128, 131_072), (10_000_000, 8192, 512, 524_288)],
)
def test_large_collections_get_ivfflat_sized_by_n(n, nlist, nprobe, min_train):
    chosen = choose_faiss_options(n, 512)
    assert chosen == {"kind": "ivfflat", "nlist": nlist, "nprobe": nprobe, "min_train": min_train}
    assert chosen["min_train"] <= n and chosen["nlist"] * 39 <= chosen["min_train"]


def test_ivf_options_stay_trainable_for_tiny_n():
    small = ivf_options(100)
    assert small["nlist"] == 2 and small["min_train"] == 100 and 1 <= small["nprobe"] <= small["nlist"]
    assert ivf_options(0)["nlist"] == 1


def test_gpu_keeps_exact_search_longer():
    assert choose_faiss_options(1_000_000, 512, gpu=True) == {"kind": "flat"}
    assert choose_faiss_options(2_000_000, 512, gpu=True)["kind"] == "ivfflat"


def test_rejects_nonsense_sizes():
    with pytest.raises(ValueError, match="n=-1"):
        choose_faiss_options(-1, 512)


def test_explicit_kind_wins_and_never_rebuilds():
    requested = {"kind": "hnsw", "ef_search": 99}
    assert auto_faiss_options(requested, 10**6, 512, {"kind": "flat"}) == (requested, False)


def test_auto_resolves_by_size_and_explicit_fields_win():
    options, rebuild = auto_faiss_options({"nprobe": 7}, 1_000_000, 512, None)
    assert options == {"kind": "ivfflat", "nlist": 2048, "nprobe": 7, "min_train": 131_072}
    assert rebuild is False  # nothing stored yet
    assert auto_faiss_options({"kind": "auto"}, 10, 512, None) == ({"kind": "flat"}, False)


def test_rebuild_only_when_the_built_shape_changes():
    built = {"kind": "ivfflat", "nlist": 2048}
    assert auto_faiss_options({}, 1_100_000, 512, built)[1] is False  # same nlist
    assert auto_faiss_options({}, 100_000, 512, built)[1] is True  # nlist 512 now
    assert auto_faiss_options({}, 1_000, 512, built)[1] is True  # back to flat
    assert auto_faiss_options({}, 1_000, 512, {"kind": "flat", "nlist": None})[1] is False


def test_visible_gpus_reads_faiss(monkeypatch):
    faiss = pytest.importorskip("faiss")
    monkeypatch.setattr(faiss, "get_num_gpus", lambda: 2, raising=False)
    assert defaults.visible_gpus() == 2
    monkeypatch.delattr(faiss, "get_num_gpus")
    assert defaults.visible_gpus() == 0  # the CPU build has no get_num_gpus


def test_gpu_decision_with_a_visible_gpu(monkeypatch):
    pytest.importorskip("faiss")
    from indexers import faiss_build

    assert faiss_build.decide_gpu("auto", "ivfflat", 1) is True
    assert faiss_build.decide_gpu("auto", "hnsw", 1) is False  # faiss has no GPU HNSW
    assert faiss_build.decide_gpu("never", "flat", 1) is False
    assert faiss_build.decide_gpu("auto", "flat", 0) is False
