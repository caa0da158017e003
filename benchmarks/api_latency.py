"""API latency: p50/p95/p99 of `POST /search` text queries at 1, 10 and 50 concurrent clients, one run.

1. Build (or reuse with `--home`) a text collection of `--records` items (default 100,000): the shared IU X-ray
   reports, replicated with unique ids. Copy j of a report has its sentences shuffled (seeded) and its MiniLM
   vector is the original's plus small seeded noise, re-normalised: MiniLM encodes each original report once and
   the vectors reach SQLite through `Collection.add`, so the build takes minutes, not hours. Concepts are linked
   once per original report (knowledge graph) and copied to its replicas.
2. Start `medsearch serve` (uvicorn, one process) on a free loopback port per lock mode: `concurrent`
   (searches share the engine) and `serial` (`MEDSEARCH_CONCURRENT_READS=false`, the old global lock). Both
   run at once and each concurrency level is measured on one, then the other, so load drift hits both alike.
3. A second process (this script's `load` subcommand) runs closed-loop clients (threads, one keep-alive httpx
   connection each) for `--duration` seconds per concurrency level and reports latencies, throughput, errors.
   The queries come from a pool of ~6,700 distinct clinical phrases (`query_pool`: the 20 hand-written QUERIES,
   the reports' MeSH terms and findings sentences, seeded order), each server sent them in turn, so no cache
   of query vectors or results can make the figure.

    python benchmarks/api_latency.py [--home DIR] [--records 100000] [--duration 20] [--clients 1,10,50]
        [--modes concurrent,serial] [--search-mode hybrid] [--out benchmarks/results/api_latency.json] [--quick]
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import logging
import os
import random
import re
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks import serving  # noqa: E402
from engine.evaluation import portable  # noqa: E402
from engine.settings import Settings  # noqa: E402

logger = logging.getLogger("benchmarks.api_latency")

COLLECTION = "latency"
TARGET_P95_MS = 150.0
TARGET_CLIENTS = 10
QUERIES = (
    "pleural effusion",
    "no pneumothorax",
    "cardiomegaly",
    "enlarged heart",
    "atelectasis at the lung bases",
    "calcified granuloma",
    "lung opacity",
    "pulmonary nodule",
    "scoliosis of the thoracic spine",
    "atherosclerotic aorta",
    "rib fracture",
    "pulmonary vascular congestion",
    "emphysema",
    "hiatal hernia",
    "pulmonary edema",
    "normal chest x-ray",
    "airspace disease in the right lower lobe",
    "degenerative changes of the spine",
    "clear lungs without consolidation",
    "sternotomy wires",
)
_SENTENCE = re.compile(r"(?<=[.!?])\s+")
POOL_SEED = 0


def query_pool(data: Path, seed: int = POOL_SEED) -> list[str]:
    """Distinct lower-cased clinical queries, in a seeded order: the hand-written QUERIES, the IU X-ray MeSH terms
    ("Airspace Disease/lung/base/left" -> "airspace disease lung base left") and the findings and impression
    sentences of 3 to 14 words without a de-identification placeholder. Thousands of them, so that no cache of
    query vectors or results can make the latency figure (a run sends each at most once per server until the
    pool is used up, see `run_load`)."""
    import csv

    phrases = [q.lower() for q in QUERIES]
    with open(data / "iu-xray" / "indiana_reports.csv", newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            for term in (row["MeSH"] or "").split(";"):
                term = " ".join(term.replace("/", " ").replace(",", " ").split()).lower()
                if term and term not in ("normal", "no indexing"):
                    phrases.append(term)
            for field in ("findings", "impression"):
                for sentence in _SENTENCE.split(row[field] or ""):
                    sentence = " ".join(sentence.split()).rstrip(".").lower()
                    if "xxxx" not in sentence and 3 <= len(sentence.split()) <= 14:
                        phrases.append(sentence)
    pool = list(dict.fromkeys(phrases))
    random.Random(seed).shuffle(pool)
    return pool


# ---------------------------------------------------------------------- build
def build_collection(home: Path, data: Path, records: int, kg: bool, seed: int = 0) -> dict[str, Any]:
    """Write `records` replicated IU X-ray reports into collection `latency` under `home`; returns build facts."""
    from engine import datasets
    from engine.workspace import Workspace

    started = time.perf_counter()
    settings = Settings(home=home, data=data, kg_enabled=kg)
    with Workspace(settings) as workspace:
        base = [r for r in datasets.load("iu-xray", data / "iu-xray") if r.text().strip()][:records]
        encoder = workspace.encoder("minilm")
        collection = workspace.collection(COLLECTION, create=True)
        collection.ensure_space("text", encoder.name, encoder.dim)
        encode_started = time.perf_counter()
        vectors = encoder.encode_texts([r.text() for r in base])
        encode_seconds = time.perf_counter() - encode_started
        knowledge = workspace.knowledge()
        concepts = knowledge.link_records(base) if knowledge else {}
        rng = np.random.default_rng(seed)
        shuffler = random.Random(seed)
        for start in range(0, records, 5000):
            batch, batch_vectors, batch_concepts = [], {}, {}
            for position in range(start, min(start + 5000, records)):
                copy, original = divmod(position, len(base))
                record = base[original]
                if copy:
                    record = dataclasses.replace(
                        record, id=f"{record.id}~{copy}", findings=_shuffled(record.findings, shuffler)
                    )
                    noisy = vectors[original] + rng.normal(0, 0.02, vectors.shape[1]).astype(np.float32)
                    vector = noisy / np.linalg.norm(noisy)
                else:
                    vector = vectors[original]
                batch.append(record)
                batch_vectors[record.id] = vector.astype(np.float32)
                if base[original].id in concepts:
                    batch_concepts[record.id] = concepts[base[original].id]
            collection.add(batch, {"text": batch_vectors}, batch_concepts)
        sync_started = time.perf_counter()
        collection.sync()
        return {
            "records": collection.count(),
            "distinct_reports": len(base),
            "minilm_encode_seconds": round(encode_seconds, 1),
            "index_build_seconds": round(time.perf_counter() - sync_started, 1),
            "build_seconds": round(time.perf_counter() - started, 1),
            "concepts": bool(concepts),
            "how": "IU X-ray reports replicated with unique ids; copies have shuffled sentences and their original's "
            "MiniLM vector plus N(0, 0.02) noise, re-normalised; concepts linked once per original and copied",
        }


def _shuffled(text: str | None, shuffler: random.Random) -> str | None:
    if not text:
        return text
    sentences = _SENTENCE.split(text)
    shuffler.shuffle(sentences)
    return " ".join(sentences)


# ---------------------------------------------------------------------- server
# server modes: settings each server runs with (the engine defaults otherwise)
MODES: dict[str, dict[str, str]] = {
    "concurrent": {"MEDSEARCH_CONCURRENT_READS": "true"},
    "serial": {"MEDSEARCH_CONCURRENT_READS": "false"},  # the old global lock
    # concurrent reads, MiniLM query encodes in torch (TorchScript trace) instead of onnxruntime
    "torch-encode": {"MEDSEARCH_CONCURRENT_READS": "true", "MEDSEARCH_ENCODERS__MINILM_ONNX": "false"},
    # concurrent reads in each of 2 API worker processes (`medsearch serve --workers 2`)
    "workers2": {"MEDSEARCH_CONCURRENT_READS": "true"},
}
# extra `medsearch serve` arguments per mode
MODE_ARGS: dict[str, list[str]] = {"workers2": ["--workers", "2"]}
MODE_PROCESSES: dict[str, int] = {"workers2": 2}  # processes that must answer /health before measuring


def start_server(home: Path, data: Path, port: int, mode: str, kg: bool, log: Path) -> subprocess.Popen:
    """`medsearch serve` on 127.0.0.1:port (API only) with the settings of `MODES[mode]`, returning once /health
    answers from every worker process (`MODE_PROCESSES`: a worker still loading would skew the first level)."""
    env = {
        **os.environ,
        "MEDSEARCH_HOME": str(home),
        "MEDSEARCH_DATA": str(data),
        "MEDSEARCH_COLLECTION": COLLECTION,
        "MEDSEARCH_KG_ENABLED": "true" if kg else "false",
        "MEDSEARCH_LOG_LEVEL": "WARNING",
        **MODES[mode],
    }
    args = ["--no-web", *MODE_ARGS.get(mode, [])]
    server, _ = serving.start(env, args, port=port, processes=MODE_PROCESSES.get(mode, 1), log=log)
    return server


# ---------------------------------------------------------------------- load (second process)
def run_load(
    url: str,
    clients: int,
    duration: float,
    search_mode: str,
    pool: list[str],
    start: int = 0,
    warmup: int = 1,
) -> dict[str, Any]:
    """Closed-loop load: `clients` threads, each sending queries back to back for `duration` seconds.

    The clients take the queries of `pool` in turn from position `start` on (one shared counter), so a server is
    sent no query twice until it has been sent the whole pool; `next_position` in the result is where the next
    level goes on, `repeats` how many requests of this level wrapped around the pool.
    """
    import httpx

    latencies: list[list[float]] = [[] for _ in range(clients)]
    errors = [0] * clients
    error_kinds: dict[str, int] = {}
    start_gate = threading.Barrier(clients + 1)
    stop_at = [0.0]
    positions = itertools.count(start)  # next() is atomic under the GIL: each position is taken once

    def next_query() -> str:
        return pool[next(positions) % len(pool)]

    def client(slot: int) -> None:
        with httpx.Client(base_url=url, timeout=60) as session:
            for _ in range(warmup):
                session.post("/search", json={"text": next_query(), "mode": search_mode})
            start_gate.wait()
            while time.perf_counter() < stop_at[0]:
                body = {"text": next_query(), "mode": search_mode, "k": 10}
                began = time.perf_counter()
                try:
                    response = session.post("/search", json=body)
                    ok = response.status_code == 200
                    kind = str(response.status_code)
                except httpx.HTTPError as e:
                    ok, kind = False, type(e).__name__
                if ok:
                    latencies[slot].append((time.perf_counter() - began) * 1000)
                else:
                    errors[slot] += 1
                    error_kinds[kind] = error_kinds.get(kind, 0) + 1

    threads = [threading.Thread(target=client, args=(slot,)) for slot in range(clients)]
    for thread in threads:
        thread.start()
    stop_at[0] = time.perf_counter() + 3600  # set for real once every client has warmed up
    start_gate.wait()
    began = time.perf_counter()
    stop_at[0] = began + duration
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - began
    end = next(positions)
    done = np.array([x for row in latencies for x in row], dtype=np.float64)
    stats = {f"p{q}_ms": round(float(np.percentile(done, q)), 1) if len(done) else None for q in (50, 95, 99)}
    return {
        "clients": clients,
        "requests": int(len(done)),
        "errors": int(sum(errors)),
        "error_kinds": error_kinds,
        **stats,
        "mean_ms": round(float(done.mean()), 1) if len(done) else None,
        "max_ms": round(float(done.max()), 1) if len(done) else None,
        "throughput_rps": round(len(done) / elapsed, 1),
        "seconds": round(elapsed, 1),
        "load_average": round(os.getloadavg()[0], 1),  # the machine's 1-minute load when the level ended
        "queries": {
            "first_position": start,
            "next_position": end,
            "repeats": max(0, end - max(start, len(pool))),
        },
    }


def load_in_subprocess(
    url: str, clients: int, duration: float, search_mode: str, data: Path, start: int
) -> dict[str, Any]:
    command = [sys.executable, __file__, "load", "--url", url, "--clients", str(clients)]
    command += [
        "--duration",
        str(duration),
        "--search-mode",
        search_mode,
        "--data",
        str(data),
        "--start",
        str(start),
    ]
    out = subprocess.run(command, capture_output=True, text=True, check=True, timeout=duration + 600)
    return json.loads(out.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------------- main
def benchmark(args: argparse.Namespace) -> dict[str, Any]:
    data = Path(args.data or Settings().data or REPO.parent / "shared" / "data")
    with tempfile.TemporaryDirectory(prefix="medsearch-latency-") as scratch:
        home = Path(args.home) if args.home else Path(scratch) / "home"
        marker = home / "collections" / COLLECTION / "manifest.json"
        if marker.is_file():
            logger.info("reusing collection %s in %s", COLLECTION, home)
            build = json.loads((home / "latency-build.json").read_text())
        else:
            logger.info("building a %d-record collection in %s", args.records, home)
            build = build_collection(home, data, args.records, kg=not args.no_kg)
            (home / "latency-build.json").write_text(json.dumps(build))
        logger.info("collection: %s", build)
        if args.build_only:
            return {"collection": build}
        levels = []
        servers: dict[str, tuple[subprocess.Popen, int]] = {}
        sent = dict.fromkeys(args.modes, 0)  # pool position per server: each server is sent each query once
        try:  # both servers up at once, levels interleaved: the machine's load drifts between minutes
            for mode in args.modes:
                port = serving.free_port()
                log = Path(scratch) / f"server-{mode}.log"
                servers[mode] = (
                    start_server(home, data, port, mode, not args.no_kg, log),
                    port,
                )
            for clients in args.clients:
                for mode in args.modes:
                    url = f"http://127.0.0.1:{servers[mode][1]}"
                    result = load_in_subprocess(
                        url, clients, args.duration, args.search_mode, data, sent[mode]
                    )
                    sent[mode] = result["queries"]["next_position"]
                    levels.append({"lock": mode, **result})
                    logger.info("%s lock, %d clients: %s", mode, clients, result)
        finally:
            for server, _ in servers.values():
                serving.stop(server)
    return summarise(build, levels, args, len(query_pool(data)))


def summarise(
    build: dict[str, Any], levels: list[dict[str, Any]], args: argparse.Namespace, pool_size: int
) -> dict[str, Any]:
    p95_by_mode = {
        x["lock"]: x["p95_ms"] for x in levels if x["clients"] == TARGET_CLIENTS and x["p95_ms"] is not None
    }
    ratios: dict[str, dict[str, Any]] = {}  # each other mode against one process with concurrent reads
    for level in levels:
        base = [x for x in levels if x["lock"] == "concurrent" and x["clients"] == level["clients"]]
        if level["lock"] == "concurrent" or not base or not base[0]["p95_ms"] or not level["p95_ms"]:
            continue
        ratios.setdefault(level["lock"], {})[str(level["clients"])] = {
            "p95_over_concurrent": round(level["p95_ms"] / base[0]["p95_ms"], 2),
            "throughput_over_concurrent": round(
                level["throughput_rps"] / max(base[0]["throughput_rps"], 1e-9), 2
            ),
        }
    return {
        "benchmark": "POST /search latency (text queries) over loopback, load from a second process",
        "collection": build,
        "search_mode": args.search_mode,
        "k": 10,
        "query_pool": {
            "size": pool_size,
            "seed": POOL_SEED,
            "how": "distinct queries: the 20 hand-written QUERIES, IU X-ray MeSH terms and 3-14 word findings and "
            "impression sentences, seeded order; each server is sent them in turn, none twice until the pool is used "
            "up (levels[].queries.repeats)",
        },
        "seconds_per_level": args.duration,
        "machine": {"cpus": os.cpu_count(), "note": "server and load generator share the same cores"},
        "levels": levels,
        "ratios": ratios,
        "target": {
            "p95_ms_below": TARGET_P95_MS,
            "clients": TARGET_CLIENTS,
            "p95_ms_by_mode": p95_by_mode,
            "met_by": sorted(mode for mode, p95 in p95_by_mode.items() if p95 < TARGET_P95_MS),
        },
    }


def print_table(result: dict[str, Any]) -> None:
    print(f"collection: {result['collection']['records']} records; mode {result['search_mode']}")
    print(
        f"{'lock':<11}{'clients':>8}{'req':>8}{'err':>5}{'p50 ms':>9}{'p95 ms':>9}{'p99 ms':>9}{'req/s':>8}"
    )
    for x in result["levels"]:
        print(
            f"{x['lock']:<11}{x['clients']:>8}{x['requests']:>8}{x['errors']:>5}"
            f"{x['p50_ms'] or 0:>9.1f}{x['p95_ms'] or 0:>9.1f}{x['p99_ms'] or 0:>9.1f}{x['throughput_rps']:>8.1f}"
        )
    target = result["target"]
    for mode, p95 in target["p95_ms_by_mode"].items():
        met = "met" if mode in target["met_by"] else "not met"
        print(
            f"{mode}: p95 at {target['clients']} clients {p95} ms (target < {target['p95_ms_below']}): {met}"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command")
    load = sub.add_parser("load", help="(internal) run the load generator and print JSON")
    load.add_argument("--url", required=True)
    load.add_argument("--clients", type=int, required=True)
    load.add_argument("--duration", type=float, required=True)
    load.add_argument("--search-mode", default="hybrid")
    load.add_argument("--data", required=True, help="shared data folder (the query pool is built from it)")
    load.add_argument("--start", type=int, default=0, help="first position in the query pool")
    parser.add_argument("--home", help="reuse (or build once into) this medsearch home")
    parser.add_argument("--data", help="shared data folder (default: Settings().data)")
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--duration", type=float, default=20.0, help="seconds per concurrency level")
    parser.add_argument("--clients", default="1,10,50", help="comma-separated concurrency levels")
    parser.add_argument(
        "--modes",
        default="concurrent,workers2,serial",
        help=f"server modes, compared in one run: {', '.join(MODES)}",
    )
    parser.add_argument("--search-mode", default="hybrid", choices=("hybrid", "dense", "keyword"))
    parser.add_argument("--no-kg", action="store_true", help="no knowledge graph (no concept ranker)")
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "api_latency.json"))
    parser.add_argument("--build-only", action="store_true", help="build the collection in --home and stop")
    parser.add_argument("--quick", action="store_true", help="2,000 records, 2 s per level, 1 and 4 clients")
    args = parser.parse_args(argv)
    if args.command == "load":
        pool = query_pool(Path(args.data))
        print(json.dumps(run_load(args.url, args.clients, args.duration, args.search_mode, pool, args.start)))
        return 0
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    if args.quick:
        args.records, args.duration, args.clients = min(args.records, 2000), 2.0, "1,4"
    args.clients = [int(x) for x in str(args.clients).split(",")]
    args.modes = [x.strip() for x in args.modes.split(",") if x.strip()]
    unknown = sorted(set(args.modes) - set(MODES))
    if unknown:
        parser.error(f"unknown --modes {', '.join(unknown)}: choose from {', '.join(MODES)}")
    result = benchmark(args)
    if args.build_only:
        print(json.dumps(result))
        return 0
    print_table(result)
    if args.search_mode == "dense":
        result["note"] = "dense mode never uses the knowledge graph"
    save(Path(args.out), run_label(args), portable(result, {"<repo>": REPO}))
    return 0


def run_label(args: argparse.Namespace) -> str:
    return f"{args.search_mode}{'' if args.no_kg else ' + kg'}"


def save(out: Path, label: str, result: dict[str, Any]) -> None:
    """Write `result` under runs[label] of `out`, keeping the other labels' runs (one file, several modes)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    saved: dict[str, Any] = {}
    if out.is_file():
        saved = json.loads(out.read_text())
    runs = saved.get("runs", {}) if isinstance(saved.get("runs"), dict) else {}
    runs[label] = result
    out.write_text(json.dumps({"benchmark": result.get("benchmark"), "runs": runs}, indent=1) + "\n")
    print(f"saved {out} (run {label!r})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
