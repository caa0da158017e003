"""Tiny runs of the performance benchmarks (ingest profile, API latency), each writing its JSON into tmp_path.

Slow (they load MiniLM, and the latency run starts `medsearch serve` three times, once with 2 workers): `pytest -m slow tests/benchmarks`.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def _run(script: str, *args: str) -> None:
    subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / script), *args], cwd=REPO, check=True, timeout=1800
    )


@pytest.mark.slow
def test_ingest_profile_quick(tmp_path: Path, shared_data: Path):
    out = tmp_path / "ingest_profile.json"
    _run(
        "ingest_profile.py",
        "--quick",
        "--data",
        str(shared_data),
        "--models",
        str(tmp_path / "none"),
        "--out",
        str(out),
    )
    result = json.loads(out.read_text())
    assert "FALLBACK" in result["encoders"]["clip"]  # no checkpoint under --models: labelled stand-in
    for kind in ("images", "reports"):
        for variant in ("before", "after"):
            run = result["runs"][kind][variant]
            assert run["records"] > 0 and run["records_per_second"] > 0
            assert set(run["seconds"]) == {
                "decode",
                "forward",
                "encode_other",
                "link",
                "write",
                "index",
                "other",
            }
            assert 0 <= run["forward_fraction"] <= 1
    assert str(tmp_path) not in out.read_text()  # no machine paths


@pytest.mark.slow
def test_api_latency_quick(tmp_path: Path, shared_data: Path):
    out = tmp_path / "api_latency.json"
    _run(
        "api_latency.py",
        "--quick",
        "--records",
        "120",
        "--no-kg",
        "--data",
        str(shared_data),
        "--out",
        str(out),
    )
    result = json.loads(out.read_text())["runs"]["hybrid"]
    assert result["collection"]["records"] == 120
    levels = {(x["lock"], x["clients"]) for x in result["levels"]}
    assert levels == {(mode, n) for mode in ("concurrent", "workers2", "serial") for n in (1, 4)}
    assert set(result["ratios"]) == {"workers2", "serial"}
    assert set(result["ratios"]["workers2"]) == {"1", "4"}  # each level beside one process's, same run
    assert result["query_pool"]["size"] > 1000
    assert all(x["queries"]["repeats"] == 0 for x in result["levels"])  # no query sent twice to a server
    assert all(
        x["errors"] == 0 and x["requests"] > 0 and x["p95_ms"] >= x["p50_ms"] for x in result["levels"]
    )


def test_api_latency_query_pool_is_large_distinct_and_seeded(shared_data: Path):
    import importlib.util

    spec = importlib.util.spec_from_file_location("api_latency", REPO / "benchmarks" / "api_latency.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    pool = module.query_pool(shared_data)
    assert len(pool) > 1000 and len(set(pool)) == len(pool)  # far more than any query cache would hold
    assert {q.lower() for q in module.QUERIES} <= set(pool)
    assert pool == module.query_pool(shared_data) and pool != module.query_pool(shared_data, seed=1)
    assert not any("xxxx" in q for q in pool)
