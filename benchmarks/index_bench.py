"""Vector index benchmark: exact FAISS flat vs FAISS HNSW / IVF-Flat / IVF-PQ, Qdrant local and Milvus Lite.

Every index is built through `indexers.create(...)` (what users run), over seeded synthetic clustered
vectors (a Gaussian mixture with low-rank in-cluster variation plus isotropic noise, L2-normalised, inner
product = cosine). Exact FAISS flat is the ground truth. Per config: build time, RSS growth of the process
tree (Milvus Lite runs a server process), and per swept search parameter (efSearch, nprobe) recall@10,
single-query QPS, batch QPS, and recall/QPS of a filtered search keeping 10% of the vectors (`shard=s3`
through the project's filter language). Also checks the engine's size-based default
(`indexers.defaults.choose_faiss_options`): recall@10 >= 0.95 at >= 5x exact single-query QPS.
Writes JSON (results and every skip with its reason) and a recall-vs-QPS PNG beside it, and prints a table.

    python benchmarks/index_bench.py [--sizes 100000 1000000] [--dim 512] [--queries 200]
        [--backends faiss-flat faiss-ivfflat ...] [--gpu auto|on|off] [--out results.json] [--quick]
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import json
import logging
import platform
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import psutil

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import indexers  # noqa: E402
from engine.evaluation import portable  # noqa: E402
from indexers.defaults import choose_faiss_options, ivf_options, visible_gpus  # noqa: E402

logger = logging.getLogger("index_bench")
ROOTS = {"<repo>": REPO, "<tmp>": Path(tempfile.gettempdir())}  # saved paths are written relative to these

K = 10
SHARDS = 10  # payload "shard" takes SHARDS values: filtering on one keeps 10%
FILTER_EXPRESSION = "shard=s3"
TARGET_RECALL, TARGET_SPEEDUP = 0.95, 5.0
ADD_CHUNK = 50_000
FILTERED_CHUNK = 10  # filtered searches run 10 queries a call (Qdrant local filters in Python, slowly)
BUILD_LIMIT_FACTOR = 1.5  # a build is stopped at 1.5 x --max-build-minutes (and recorded as skipped)
CHECKPOINT_PLOT_FROM = 100_000  # sizes from which the plot is redrawn after every config
MILVUS_INDEX_WAIT = 1800.0  # seconds to wait for Milvus Lite to index every sealed row
DATA = {"clusters": 1024, "intrinsic_dim": 32, "spread": 0.62, "noise": 0.185, "seed": 1234}
# exact brute force in Python / a second exact engine: run up to this size, beyond it skipped with the reason
MAX_SIZE = {
    "qdrant-local": (
        200_000,
        "Qdrant local mode is a pure-Python exact store (numpy brute force, payload filters checked point by "
        "point in Python)",
    ),
    "milvus-flat": (200_000, "exact search on Milvus Lite, as faiss-flat"),
    "milvus-ivfflat": (
        200_000,
        "Milvus Lite (one embedded server process) inserted, indexed and answered single and filtered queries "
        "too slowly at 100k (Strong consistency, as MilvusIndex uses)",
    ),
}
ORDER = (
    "faiss-flat",
    "faiss-ivfflat",
    "faiss-ivfpq",
    "milvus-ivfflat",
    "milvus-flat",
    "qdrant-local",
    "faiss-hnsw",
)
MILVUS_NOTE = (
    "Milvus Lite builds FLAT and IVF_FLAT (IVF_FLAT recall follows nprobe once segments are sealed by flush); "
    "it accepts HNSW but searched exactly in our probe (recall 1.0 at M=4, ef=10 on 20k random 64-d vectors), "
    "so HNSW is not benchmarked on Milvus Lite"
)


@dataclass
class Config:
    """One index to build: backend name, `create` options, and the search parameter swept."""

    label: str
    backend: str
    options: dict[str, Any]
    sweep_name: str | None = None
    sweep: list[int] = field(default_factory=list)


def make_vectors(n: int, dim: int, seed: int) -> np.ndarray:
    """float32 (n, dim) L2-normalised rows of the clustered mixture `DATA` (deterministic for a seed)."""
    structure = np.random.default_rng(DATA["seed"])
    centers = structure.standard_normal((DATA["clusters"], dim), dtype=np.float32)
    basis = structure.standard_normal((DATA["intrinsic_dim"], dim), dtype=np.float32)
    basis /= np.sqrt(DATA["intrinsic_dim"])
    rng = np.random.default_rng(seed)
    out = np.empty((n, dim), dtype=np.float32)
    for start in range(0, n, 100_000):
        m = min(100_000, n - start)
        labels = rng.integers(0, DATA["clusters"], m)
        local = rng.standard_normal((m, DATA["intrinsic_dim"]), dtype=np.float32) @ basis
        rows = centers[labels] + DATA["spread"] * local
        rows += DATA["noise"] * rng.standard_normal((m, dim), dtype=np.float32)
        rows /= np.linalg.norm(rows, axis=1, keepdims=True)
        out[start : start + m] = rows
    return out


def tree_rss() -> int:
    """Resident bytes of this process and its children (Milvus Lite's server)."""
    process = psutil.Process()
    total = process.memory_info().rss
    for child in process.children(recursive=True):
        try:
            total += child.memory_info().rss
        except psutil.Error:
            pass
    return total


def configs_for(n: int, dim: int, gpu: bool, use_gpu: str, workdir: Path) -> dict[str, Config]:
    """Every config at size n; IVF ones use the default rule's nlist so the default is one of the points."""
    chosen = choose_faiss_options(n, dim, gpu=gpu)
    ivf = chosen if chosen["kind"] == "ivfflat" else ivf_options(n)  # small n: IVF sized by the same rule
    nlist = ivf["nlist"]
    train = {"nlist": nlist, "min_train": ivf["min_train"], "use_gpu": use_gpu}
    probes = sorted({p for p in (4, 8, 16, 32, 64, 128, 256) if p <= nlist} | {ivf["nprobe"]})
    return {
        "faiss-flat": Config("faiss-flat", "faiss", {"kind": "flat", "use_gpu": use_gpu}),
        "faiss-hnsw": Config(
            "faiss-hnsw",
            "faiss",
            {"kind": "hnsw", "hnsw_m": 16, "ef_construction": 64},
            "ef_search",
            [16, 32, 64, 128, 256],
        ),
        "faiss-ivfflat": Config("faiss-ivfflat", "faiss", {"kind": "ivfflat", **train}, "nprobe", probes),
        "faiss-ivfpq": Config(
            "faiss-ivfpq", "faiss", {"kind": "ivfpq", **train}, "nprobe", [p for p in probes if p >= 8][::2]
        ),
        "qdrant-local": Config("qdrant-local", "qdrant", {"path": str(workdir / "qdrant")}),
        "milvus-flat": Config(
            "milvus-flat", "milvus", {"uri": str(workdir / "flat.db"), "index_type": "FLAT"}
        ),
        "milvus-ivfflat": Config(
            "milvus-ivfflat",
            "milvus",
            {"uri": str(workdir / "ivf.db"), "index_type": "IVF_FLAT", "nlist": nlist},
            "nprobe",
            [p for p in probes if p >= 8][::2],
        ),
    }


class BuildTooSlowError(RuntimeError):
    """A build passed its time limit; the message says how far it got."""


def build(
    config: Config, dim: int, vectors: np.ndarray, ids: list[str], payloads: list[dict], limit_s: float
) -> tuple[Any, float]:
    """Create the index and add every vector in chunks; returns (index, seconds) including Milvus flush/indexing.

    Raises:
        BuildTooSlowError: `limit_s` passed with vectors still to add (checked between chunks).
    """
    started = time.perf_counter()
    index = indexers.create(config.backend, dim=dim, **config.options)
    for start in range(0, len(ids), ADD_CHUNK):
        stop = start + ADD_CHUNK
        index.add(ids[start:stop], vectors[start:stop], payloads[start:stop])
        elapsed = time.perf_counter() - started
        if elapsed > limit_s and stop < len(ids):
            index.close()
            rate = stop / elapsed
            raise BuildTooSlowError(
                f"build stopped at the time limit ({limit_s / 60:.0f} min): {stop} of {len(ids)} vectors added "
                f"in {elapsed:.0f}s ({rate:.0f}/s), so the whole build would take ~{len(ids) / rate / 60:.0f} min"
            )
    if config.backend == "milvus":
        index.save()  # flush: seals segments so IVF_FLAT is built over them
        wait_for_milvus_index(index)
    return index, time.perf_counter() - started


def wait_for_milvus_index(index: Any) -> None:
    """Block until Milvus Lite has indexed every row (IVF_FLAT applies to indexed, sealed segments only)."""
    client, deadline = index._open_client(), time.monotonic() + MILVUS_INDEX_WAIT
    while time.monotonic() < deadline:
        state = client.describe_index(index.collection, "_vector")
        if not state.get("pending_index_rows", 0) and state.get("indexed_rows", 0) >= state.get(
            "total_rows", 0
        ):
            return
        time.sleep(1.0)
    logger.warning(
        "milvus index of %s still pending after %.0fs: %s", index.collection, MILVUS_INDEX_WAIT, state
    )


def set_parameter(index: Any, config: Config, value: int) -> None:
    if config.backend == "faiss":
        index.set_search_params(**{config.sweep_name: value})
    else:  # MilvusIndex reads its options at each search
        index.options = dataclasses.replace(index.options, **{config.sweep_name: value})


def timed_search(
    index: Any, queries: np.ndarray, chunk: int, budget: float, filter: indexers.Filter | None = None
) -> tuple[np.ndarray, float]:
    """Search `queries` `chunk` rows at a time until done or `budget` seconds pass (at least one chunk).

    Returns:
        ids object (m, K) of the m rows searched, and queries per second.
    """
    found, done, started = [], 0, time.perf_counter()
    while done < len(queries) and (done == 0 or time.perf_counter() - started < budget):
        ids, _ = index.search(queries[done : done + chunk], K, filter=filter)
        found.append(ids)
        done += len(ids)
    return np.concatenate(found), done / (time.perf_counter() - started)


def recall(found: np.ndarray, truth: np.ndarray) -> float:
    """Mean |found ∩ truth| / K over rows (found may have fewer rows: the first ones)."""
    hits = [len(set(row) & set(expected)) for row, expected in zip(found, truth[: len(found)], strict=True)]
    return float(np.mean(hits) / K)


def measure(index: Any, queries: np.ndarray, truth: dict[str, np.ndarray], args: argparse.Namespace) -> dict:
    """recall@10 and QPS: batched, one query at a time, and batched with the 10% filter."""
    only = indexers.parse_filters([FILTER_EXPRESSION])
    index.search(queries[:4], K)  # warm-up: first calls start threads and fill caches
    index.search(queries[:4], K, filter=only)
    batch, batch_qps = timed_search(index, queries, args.batch, args.budget)
    single, single_qps = timed_search(index, queries, 1, args.budget)
    filtered, filtered_qps = timed_search(index, queries, FILTERED_CHUNK, args.budget, only)
    return {
        "recall": recall(batch, truth["all"]),
        "qps_single": single_qps,
        "qps_batch": batch_qps,
        "single_queries": len(single),
        "filtered_recall": recall(filtered, truth["filtered"]),
        "filtered_qps": filtered_qps,
        "filtered_queries": len(filtered),
    }


def run_config(config: Config, dim: int, data: dict, args: argparse.Namespace) -> dict:
    """Build one config and measure it at each swept value (or once)."""
    gc.collect()
    before = tree_rss()
    limit = args.max_build_minutes * 60 * BUILD_LIMIT_FACTOR
    index, seconds = build(config, dim, data["vectors"], data["ids"], data["payloads"], limit)
    rss = (tree_rss() - before) / 2**20
    points = []
    for value in config.sweep or [None]:
        if value is not None:
            set_parameter(index, config, value)
        point = {
            "param": config.sweep_name,
            "value": value,
            **measure(index, data["queries"], data["truth"], args),
        }
        points.append(point)
        logger.info("%s %s=%s: %s", config.label, config.sweep_name, value, point)
    result = {"label": config.label, "backend": config.backend, "options": config.options, "build_s": seconds}
    result |= {"rss_mb": rss, "points": points}
    if config.backend == "faiss":
        result["gpu"] = bool(getattr(index, "_use_gpu", False))
    index.close()
    del index
    gc.collect()
    return result


def ground_truth(flat: Any, queries: np.ndarray) -> dict[str, np.ndarray]:
    """Exact top-10 ids of every query, unfiltered and under the 10% filter."""
    return {
        "all": flat.search(queries, K)[0],
        "filtered": flat.search(queries, K, filter=indexers.parse_filters([FILTER_EXPRESSION]))[0],
    }


def skip_reason(label: str, n: int, measured: dict[int, dict], args: argparse.Namespace) -> str | None:
    """Why `label` does not run at size n (None: it runs), with an extrapolation from a measured size."""
    smaller = [(size, found[label]) for size, found in sorted(measured.items()) if label in found]
    extrapolation = ""
    if smaller:
        size, result = smaller[-1]
        factor = n / size
        point = result["points"][-1]
        growth = 1.2 if label == "faiss-hnsw" else 1.0  # HNSW inserts get slower as the graph grows
        build_min = result["build_s"] * factor * growth / 60
        extrapolation = (
            f"; measured at {size}: build {result['build_s']:.0f}s, RSS {result['rss_mb']:.0f} MB, "
            f"{point['qps_single']:.1f} single QPS -> linear extrapolation to {n}: build ~{build_min:.0f} min, "
            f"RSS ~{result['rss_mb'] * factor:.0f} MB, ~{point['qps_single'] / factor:.2f} single QPS"
        )
        if label == "faiss-hnsw" and build_min > args.max_build_minutes:
            return f"build would exceed --max-build-minutes {args.max_build_minutes}{extrapolation}"
    if label in MAX_SIZE and n > MAX_SIZE[label][0]:
        limit, why = MAX_SIZE[label]
        return f"{why}: run up to {limit} vectors to keep the run near an hour on 2 cores{extrapolation}"
    return None


def default_summary(n: int, dim: int, gpu: bool, configs: list[dict]) -> dict:
    """The engine's default for size n, its measured point, and whether it meets the target."""
    chosen = choose_faiss_options(n, dim, gpu=gpu)
    exact = next(c for c in configs if c["label"] == "faiss-flat")["points"][0]
    label, param = ("faiss-flat", None) if chosen["kind"] == "flat" else (f"faiss-{chosen['kind']}", "nprobe")
    config = next((c for c in configs if c["label"] == label), None)
    if config is None:
        return {"options": chosen, "measured": False}
    point = next(p for p in config["points"] if param is None or p["value"] == chosen[param])
    speedup = point["qps_single"] / exact["qps_single"]
    return {
        "options": chosen,
        "measured": True,
        "recall": point["recall"],
        "qps_single": point["qps_single"],
        "qps_batch": point["qps_batch"],
        "exact_qps_single": exact["qps_single"],
        "exact_qps_batch": exact["qps_batch"],
        "speedup_single": speedup,
        "speedup_batch": point["qps_batch"] / exact["qps_batch"],
        "meets_target": point["recall"] >= TARGET_RECALL and speedup >= TARGET_SPEEDUP,
        "target": f"recall@10 >= {TARGET_RECALL} at >= {TARGET_SPEEDUP}x exact single-query QPS",
    }


def prepare_data(n: int, args: argparse.Namespace, device: dict) -> dict[str, Any]:
    """The seeded vectors, queries, ids and payloads of size n, with the exact (faiss flat) ground truth."""
    everything = make_vectors(n + args.queries, args.dim, seed=n)
    data = {
        "vectors": everything[:n],
        "queries": everything[n:],
        "ids": [f"v{i}" for i in range(n)],
        "payloads": [{"shard": f"s{i % SHARDS}"} for i in range(n)],
    }
    flat = indexers.create("faiss", dim=args.dim, kind="flat", use_gpu=device["use_gpu"])
    for start in range(0, n, ADD_CHUNK):
        stop = start + ADD_CHUNK
        flat.add(data["ids"][start:stop], data["vectors"][start:stop], data["payloads"][start:stop])
    data["truth"] = ground_truth(flat, data["queries"])
    flat.close()
    return data


def run_size(
    n: int, args: argparse.Namespace, measured: dict[int, dict], device: dict, reuse: dict[str, dict]
) -> dict:
    """Every selected config at size n (faiss-flat first: it is the ground truth); configs in `reuse` (results of
    an interrupted run over the same seeded data, `--resume`) are taken as they are, and `--skip` ones recorded."""
    started = time.perf_counter()
    workdir = Path(tempfile.mkdtemp(prefix="index_bench_", dir=args.workdir))
    results, skipped, data = [], [], None
    try:
        configs = configs_for(n, args.dim, device["gpu_for_defaults"], device["use_gpu"], workdir)
        for label in dict.fromkeys(args.backends):  # in the order given (default ORDER)
            kept = reuse.get(label, {})  # a result, or {"skipped": reason}, of the interrupted run
            reason = args.skip.get(label) or kept.get("skipped")
            if not kept and reason is None:
                reason = skip_reason(label, n, measured, args)
            if kept and reason is None:
                result = kept
                logger.info("%s at %d: kept from the interrupted run", label, n)
            elif reason is None:
                data = data or prepare_data(n, args, device)
                try:
                    result = run_config(configs[label], args.dim, data, args)
                except (indexers.BackendUnavailableError, BuildTooSlowError) as e:
                    reason = str(e)
            if reason is not None:
                logger.warning("skipping %s at %d: %s", label, n, reason)
                skipped.append({"label": label, "reason": reason})
                continue
            results.append(result)
            measured.setdefault(n, {})[label] = result
            args.checkpoint(n, {"configs": results, "skipped": skipped})
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    out = {"configs": results, "skipped": skipped, "seconds": time.perf_counter() - started}
    if any(c["label"] == "faiss-flat" for c in results):
        out["default"] = default_summary(n, args.dim, device["gpu_for_defaults"], results)
    return out


def format_table(sizes: dict[str, dict]) -> str:
    """One line per config and swept value: build s, RSS MB, recall@10, QPS single/batch, filtered."""
    header = (
        f"{'N':>8} {'config':<15} {'param':>13} {'build s':>8} {'RSS MB':>7} {'R@10':>6} "
        f"{'QPS 1':>8} {'QPS batch':>9} {'filt R@10':>9} {'filt QPS':>8}"
    )
    lines = [header, "-" * len(header)]
    for n, found in sizes.items():
        for config in found["configs"]:
            for p in config["points"]:
                param = f"{p['param']}={p['value']}" if p["param"] else "-"
                lines.append(
                    f"{n:>8} {config['label']:<15} {param:>13} {config['build_s']:>8.1f} {config['rss_mb']:>7.0f} "
                    f"{p['recall']:>6.3f} {p['qps_single']:>8.1f} {p['qps_batch']:>9.1f} "
                    f"{p['filtered_recall']:>9.3f} {p['filtered_qps']:>8.1f}"
                )
        for skip in found["skipped"]:
            lines.append(f"{n:>8} {skip['label']:<15} skipped: {skip['reason']}")
        default = found.get("default")
        if default and default.get("measured"):
            verdict = "MEETS" if default["meets_target"] else "MISSES"
            if default["options"]["kind"] == "flat":
                verdict = "is exact search, so not held to"
            lines.append(
                f"{n:>8} default {default['options']}: recall@10 {default['recall']:.3f}, "
                f"{default['qps_single']:.1f} QPS = {default['speedup_single']:.1f}x exact "
                f"({default['exact_qps_single']:.1f}); batch {default['speedup_batch']:.1f}x -> {verdict} the target "
                f"({default['target']})"
            )
    return "\n".join(lines)


def plot(sizes: dict[str, dict], path: Path) -> None:
    """Recall@10 against QPS (log), single queries on top and batches below, one column per size."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    columns = max(1, len(sizes))
    figure, axes = plt.subplots(2, columns, figsize=(6.5 * columns, 9), squeeze=False)
    colours = {label: f"C{i}" for i, label in enumerate(ORDER)}  # one colour per config in every panel
    lowest = min([p["recall"] for f in sizes.values() for c in f["configs"] for p in c["points"]] + [0.9])
    for column, (n, found) in enumerate(sizes.items()):
        for row, key in enumerate(("qps_single", "qps_batch")):
            axis = axes[row][column]
            for config in found["configs"]:
                qps = [p[key] for p in config["points"]]
                recalls = [p["recall"] for p in config["points"]]
                colour = colours.get(config["label"])
                axis.plot(qps, recalls, marker="o", label=config["label"], color=colour)
            exact = next((c for c in found["configs"] if c["label"] == "faiss-flat"), None)
            if exact:
                axis.axvline(
                    TARGET_SPEEDUP * exact["points"][0][key], color="grey", linestyle=":", label="5x exact"
                )
            default = found.get("default", {})
            if default.get("measured"):
                axis.plot(
                    [default[key]],
                    [default["recall"]],
                    marker="*",
                    markersize=16,
                    color="red",
                    linestyle="none",
                    label="engine default",
                )
            axis.axhline(TARGET_RECALL, color="grey", linestyle="--", linewidth=0.8)
            axis.set_ylim(lowest - 0.02, 1.01)
            axis.set_xscale("log")
            axis.set_xlabel("queries/s (" + ("one at a time" if row == 0 else "batches") + ", 2 CPU cores)")
            axis.set_ylabel("recall@10")
            axis.set_title(f"N = {int(n):,} x {found.get('dim', '')}")
            axis.grid(True, which="both", alpha=0.3)
            axis.legend(fontsize=8, loc="lower left")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def versions() -> dict[str, str]:
    found = {}
    for package in ("faiss-cpu", "faiss-gpu-cu12", "qdrant-client", "pymilvus", "milvus-lite", "numpy"):
        try:
            found[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            continue
    return found


def device_info(mode: str) -> dict[str, Any]:
    """GPU decision: --gpu auto uses faiss' GPU path when one is visible, on requires one, off never."""
    gpus = visible_gpus()
    if mode == "on" and gpus == 0:
        raise SystemExit(
            "--gpu on but faiss sees no GPU (pip install 'medsearch[gpu]', check CUDA_VISIBLE_DEVICES)"
        )
    use_gpu = {"auto": "auto", "on": "always", "off": "never"}[mode]
    on_gpu = gpus > 0 and mode != "off"
    return {
        "gpu_mode": mode,
        "gpus_visible": gpus,
        "use_gpu": use_gpu,
        "gpu_for_defaults": on_gpu,
        "device": "gpu" if on_gpu else "cpu",
        "cpu_count": psutil.cpu_count(),
        "platform": platform.platform(),
    }


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--queries", type=int, default=200, help="query vectors (held out of the base set)")
    parser.add_argument("--backends", nargs="+", default=list(ORDER), choices=ORDER)
    parser.add_argument("--batch", type=int, default=100, help="queries per batch for batch QPS")
    parser.add_argument(
        "--budget", type=float, default=10.0, help="seconds per QPS measurement (at least one batch)"
    )
    parser.add_argument(
        "--max-build-minutes",
        type=float,
        default=20.0,
        help="skip HNSW at a size whose extrapolated build exceeds this",
    )
    parser.add_argument("--gpu", choices=("auto", "on", "off"), default="auto")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "index_bench.json")
    parser.add_argument("--workdir", type=Path, default=None, help="scratch folder for Qdrant/Milvus files")
    parser.add_argument(
        "--skip",
        action="append",
        default=[],
        metavar="LABEL=REASON",
        help="do not run a config; the reason is recorded in the JSON (repeatable)",
    )
    parser.add_argument("--replot", action="store_true", help="only redraw the PNG from the JSON at --out")
    parser.add_argument(
        "--resume",
        action="store_true",
        help="keep the completed sizes already in --out (other sizes are run)",
    )
    parser.add_argument(
        "--quick", action="store_true", help="tiny sizes for a smoke test (2000 and 5000, 64-d)"
    )
    if parser.parse_known_args(argv)[0].quick:  # tiny defaults; flags given explicitly still win
        parser.set_defaults(sizes=[2000, 5000], dim=64, queries=40, budget=2.0)
    args = parser.parse_args(argv)
    args.skip = dict(item.split("=", 1) for item in args.skip if "=" in item)
    return args


def main(argv: Sequence[str] | None = None) -> dict:
    given = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(given)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("indexers", "faiss", "httpx"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    logging.getLogger("grpc").setLevel(
        logging.CRITICAL
    )  # Milvus Lite logs unimplemented calls it then avoids
    if args.replot:
        report = json.loads(args.out.read_text())
        plot(report["sizes"], args.out.with_suffix(".png"))
        print(format_table(report["sizes"]))
        return report
    device = device_info(args.gpu)
    report: dict[str, Any] = {
        "benchmark": "index_bench",
        "command": " ".join(["python", "benchmarks/index_bench.py", *portable(given, ROOTS)]),
        "machine": {k: device[k] for k in ("cpu_count", "platform")},
        "device": {k: device[k] for k in ("device", "gpu_mode", "gpus_visible")},
        "versions": versions(),
        "dataset": {
            "kind": "synthetic clustered (Gaussian mixture, low-rank in-cluster spread + noise)",
            **DATA,
            "dim": args.dim,
            "queries": args.queries,
            "metric": "inner product on L2-normalised rows",
            "k": K,
            "filter": FILTER_EXPRESSION,
            "filter_selectivity": 1 / SHARDS,
        },
        "real_corpus": {
            "used": False,
            "reason": "the local corpora (VQA-RAD, SLAKE, MedPix, IU X-ray) hold a few "
            "thousand records each, far below 100k vectors; synthetic data only",
        },
        "ground_truth": "exact faiss flat (inner product) through indexers.create('faiss', kind='flat')",
        "target": f"default index at 1M x {args.dim}: recall@10 >= {TARGET_RECALL} at >= {TARGET_SPEEDUP}x exact QPS",
        "notes": [
            MILVUS_NOTE,
            "QPS on a shared 2-core machine, niced; one process, faiss OpenMP threads = cores",
        ],
        "sizes": {},
    }
    plot_path = args.out.with_suffix(".png")
    args.out.parent.mkdir(parents=True, exist_ok=True)

    def save() -> None:
        args.out.write_text(json.dumps(portable(report, ROOTS), indent=1, default=float) + "\n")

    def checkpoint(n: int, partial: dict) -> None:
        report["sizes"][str(n)] = {"dim": args.dim, "partial": True, **partial}
        save()
        if n >= CHECKPOINT_PLOT_FROM:  # long runs: a usable plot even if stopped part-way
            plot(report["sizes"], plot_path)

    args.checkpoint = checkpoint
    measured: dict[int, dict] = {}
    reuse: dict[int, dict[str, dict]] = {}
    if args.resume and args.out.is_file():  # keep the sizes a previous run completed
        previous = json.loads(args.out.read_text())
        for size, found in previous["sizes"].items():
            done = {config["label"]: config for config in found["configs"]}
            if not found.get("partial") and int(size) not in args.sizes:
                report["sizes"][size] = found
                measured[int(size)] = done
            elif found.get("partial"):
                reuse[int(size)] = done | {
                    skip["label"]: {"skipped": skip["reason"]} for skip in found["skipped"]
                }
        report["command"] = f"{previous['command']} && {report['command']}"
    for n in args.sizes:
        logger.info("size %d x %d", n, args.dim)
        report["sizes"][str(n)] = {"dim": args.dim, **run_size(n, args, measured, device, reuse.get(n, {}))}
        save()
        plot(report["sizes"], plot_path)
    table = format_table(report["sizes"])
    print(table)
    print(f"wrote {args.out} and {plot_path}")
    return report


if __name__ == "__main__":
    main()
