"""`benchmarks/index_bench.py --quick` end to end at tiny N (faiss configs), and its GPU switch."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

pytest.importorskip("faiss")
pytest.importorskip("matplotlib")

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "index_bench.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("index_bench", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["index_bench"] = module
    spec.loader.exec_module(module)
    return module


def test_quick_run_writes_json_and_png(bench, tmp_path):
    out = tmp_path / "results" / "index_bench.json"
    backends = ["faiss-flat", "faiss-ivfflat", "faiss-hnsw"]
    bench.main(
        ["--quick", "--sizes", "3000", "--queries", "20", "--budget", "0.3", "--backends", *backends]
        + ["--out", str(out), "--workdir", str(tmp_path)]
    )
    text = out.read_text()
    report = json.loads(text)
    machine_root = str(Path(__file__).resolve().parents[3])  # the folder that holds the repo checkout
    assert machine_root not in text and str(tmp_path) not in text  # repo-relative / placeholder paths only
    assert report["device"]["device"] in {"cpu", "gpu"} and report["dataset"]["seed"] == bench.DATA["seed"]
    for size in ("3000",):
        found = report["sizes"][size]
        assert [c["label"] for c in found["configs"]] == backends
        exact = found["configs"][0]["points"][0]
        assert exact["recall"] == 1.0 and exact["filtered_recall"] == 1.0
        for config in found["configs"]:
            assert config["build_s"] >= 0 and "rss_mb" in config
            for point in config["points"]:
                assert 0.0 <= point["recall"] <= 1.0 and point["qps_single"] > 0 and point["qps_batch"] > 0
        ivf = found["configs"][1]["points"]
        assert ivf[-1]["recall"] >= ivf[0]["recall"]  # more lists probed, no worse recall
        assert found["default"]["options"] == {"kind": "flat"} and found["default"]["measured"]
    png = out.with_suffix(".png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"


def test_skips_are_recorded_with_a_measured_extrapolation(bench):
    args = bench.parse_args(["--quick"])
    measured = {
        100_000: {
            "qdrant-local": {"build_s": 60.0, "rss_mb": 500.0, "points": [{"qps_single": 8.0}]},
            "faiss-hnsw": {"build_s": 200.0, "rss_mb": 300.0, "points": [{"qps_single": 900.0}]},
        }
    }
    reason = bench.skip_reason("qdrant-local", 1_000_000, measured, args)
    assert "pure-Python" in reason and "build ~10 min" in reason and "0.80 single QPS" in reason
    assert "max-build-minutes" in bench.skip_reason("faiss-hnsw", 1_000_000, measured, args)
    assert (
        bench.skip_reason("faiss-hnsw", 200_000, measured, bench.parse_args(["--max-build-minutes", "60"]))
        is None
    )
    assert bench.skip_reason("faiss-ivfflat", 1_000_000, measured, args) is None


def test_gpu_switch(bench, monkeypatch):
    import faiss

    monkeypatch.setattr(faiss, "get_num_gpus", lambda: 1, raising=False)
    assert bench.device_info("auto")["device"] == "gpu" and bench.device_info("auto")["use_gpu"] == "auto"
    assert bench.device_info("off") | {"platform": ""} == bench.device_info("off") | {"platform": ""}
    assert bench.device_info("off")["device"] == "cpu" and bench.device_info("off")["use_gpu"] == "never"
    monkeypatch.setattr(faiss, "get_num_gpus", lambda: 0)
    assert bench.device_info("auto")["device"] == "cpu"
    with pytest.raises(SystemExit, match="no GPU"):
        bench.device_info("on")
