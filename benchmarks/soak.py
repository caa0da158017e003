"""Soak test: N concurrent HTTP clients send mixed searches (and `POST /ask` when the server has it) for a
fixed time; every non-2xx answer or transport error counts as an error. Loopback only.

    python benchmarks/soak.py [--duration 60] [--clients 50] [--url http://127.0.0.1:PORT]
                              [--home DIR] [--data DIR] [--out benchmarks/results/soak.json]

Without --url it starts `medsearch serve --no-web` on a free loopback port with MEDSEARCH_HOME=--home
(default: a temporary home, into which the shared VQA-RAD set is ingested and for which the VQA model is
trained first), and stops it at the end. `/ask` is mixed in (one request in four, half of them with an image
the server serves) only when the OpenAPI schema lists it and a probe question is answered; the output says
which, and why not.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks import serving  # noqa: E402

TEXTS = (
    "brain hemorrhage",
    "pleural effusion",
    "cardiomegaly",
    "no acute cardiopulmonary abnormality",
    "kidney stone",
    "fracture of the femur",
    "liver lesion",
    "is there a pneumothorax",
    "enlarged heart",
    "lung nodule left upper lobe",
    "ménière's disease ü 漢字",
    "",
)
QUESTIONS = (
    "Is there a pleural effusion?",
    "Which organ shows the hemorrhage?",
    "Is the heart enlarged?",
    "What modality is used for the brain scan?",
)
FILTERS = (None, {"modality": ["CT", "MR"]}, ["body_part=head,chest"], {"modality": "XR"})


def _check_loopback(url: str) -> None:
    host = httpx.URL(url).host
    if host not in ("127.0.0.1", "localhost", "::1") and not host.startswith("127."):
        raise SystemExit(f"soak targets loopback only, not {host!r}")


def ask_field(schema: dict[str, Any]) -> str | None:
    """The question field of `POST /ask` in the OpenAPI schema, or None when the route is absent."""
    operation = schema.get("paths", {}).get("/ask", {}).get("post")
    if operation is None:
        return None
    body = operation.get("requestBody", {}).get("content", {}).get("application/json", {}).get("schema", {})
    if "$ref" in body:
        body = schema["components"]["schemas"][body["$ref"].rsplit("/", 1)[-1]]
    names = list(body.get("properties", {}))
    return next(
        (n for n in ("question", "query", "text", "q") if n in names), names[0] if names else "question"
    )


def _request(rng: random.Random, ask: str | None, images: list[str]) -> tuple[str, str, dict[str, Any]]:
    if ask and rng.random() < 0.25:
        body = {ask: rng.choice(QUESTIONS)}
        if images and rng.random() < 0.5:
            body["image"] = rng.choice(images)
        return "ask", "/ask", body
    body: dict[str, Any] = {"text": rng.choice(TEXTS) or "chest", "k": rng.choice((5, 10, 20))}
    body["mode"] = rng.choice(("hybrid", "hybrid", "dense", "keyword"))
    if (chosen := rng.choice(FILTERS)) is not None:
        body["filters"] = chosen
    if rng.random() < 0.1:
        body["offset"] = 10
    return "search", "/search", body


def _client_loop(
    url: str, ask: str | None, images: list[str], seed: int, until: float, timeout: float, out: list
) -> None:
    rng = random.Random(seed)
    with httpx.Client(base_url=url, timeout=timeout) as client:
        while time.monotonic() < until:
            kind, path, body = _request(rng, ask, images)
            started = time.perf_counter()
            try:
                response = client.post(path, json=body)
                status, detail = response.status_code, "" if response.is_success else response.text[:200]
            except httpx.HTTPError as e:
                status, detail = 0, f"{type(e).__name__}: {e}"
            out.append((kind, status, (time.perf_counter() - started) * 1000, detail))


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(q / 100 * len(ordered)))], 1)


def sample_images(client: httpx.Client, count: int = 4) -> list[str]:
    """Base64 of up to `count` record images the server itself serves (query images for /ask)."""
    import base64

    images = []
    for collection in client.get("/collections").json().get("collections", []):
        page = client.get(f"/collections/{collection['name']}/records", params={"limit": 50}).json()
        for record in page.get("records", []):
            if record.get("image_url") and len(images) < count:
                response = client.get(record["image_url"])
                if response.is_success:
                    images.append(base64.b64encode(response.content).decode())
    return images


def probe_ask(client: httpx.Client, field: str) -> str | None:
    """None when `POST /ask` answers; else why not (e.g. 503: no trained VQA model in this home)."""
    response = client.post("/ask", json={field: QUESTIONS[0]})
    return None if response.is_success else f"{response.status_code}: {response.text[:300]}"


def run_soak(url: str, duration: float = 60.0, clients: int = 50, timeout: float = 60.0) -> dict[str, Any]:
    """Run `clients` threads against `url` for `duration` seconds; return counts, errors and latencies.

    `/ask` joins the mix when the OpenAPI schema lists it and a probe question gets an answer."""
    _check_loopback(url)
    with httpx.Client(base_url=url, timeout=timeout) as client:
        ask = ask_field(client.get("/openapi.json").json())
        ask_unavailable = probe_ask(client, ask) if ask else None
        if ask_unavailable:
            ask = None
        images = sample_images(client) if ask else []
    results: list[tuple[str, int, float, str]] = []
    until = time.monotonic() + duration
    started = time.perf_counter()
    threads = [
        threading.Thread(
            target=_client_loop, args=(url, ask, images, seed, until, timeout, results), daemon=True
        )
        for seed in range(clients)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(duration + timeout + 30)
    elapsed = time.perf_counter() - started
    errors = [r for r in results if not 200 <= r[1] < 300]
    latencies = [r[2] for r in results]
    by_kind = {
        kind: {
            "requests": sum(1 for r in results if r[0] == kind),
            "errors": sum(1 for r in errors if r[0] == kind),
            "p95_ms": _percentile([r[2] for r in results if r[0] == kind], 95),
        }
        for kind in sorted({r[0] for r in results})
    }
    return {
        "duration_s": round(elapsed, 1),
        "clients": clients,
        "ask_included": ask is not None,
        "ask_unavailable": ask_unavailable,
        "mix": _mix(ask, ask_unavailable),
        "requests": len(results),
        "errors": len(errors),
        "error_samples": sorted({f"{r[0]} {r[1]}: {r[3]}" for r in errors})[:10],
        "requests_per_s": round(len(results) / elapsed, 1) if elapsed else 0.0,
        "latency_ms": {q: _percentile(latencies, float(q[1:])) for q in ("p50", "p95", "p99")}
        | {"max": round(max(latencies, default=0.0), 1)},
        "by_kind": by_kind,
    }


def _mix(ask: str | None, unavailable: str | None) -> str:
    if ask:
        return "search (hybrid/dense/keyword, filters, pages) + ask 1 in 4 (half with an image)"
    return "search only (" + ("/ask did not answer a probe" if unavailable else "no /ask route") + ")"


def _prepare_home(home: Path, data: Path | None, env: dict[str, str]) -> None:
    """Ingest VQA-RAD into an empty home, and train its VQA model (for `/ask`) when the CLI can."""
    if not ((home / "collections").is_dir() and any((home / "collections").iterdir())):
        source = (data or REPO.parent / "shared" / "data") / "vqa-rad"
        print("ingesting VQA-RAD into a fresh home (once) ...", file=sys.stderr)
        command = [sys.executable, "-m", "ui.cli", "ingest", "vqa-rad", str(source)]
        subprocess.run(command, cwd=REPO, env=env, check=True, stdout=subprocess.DEVNULL)
    if not (home / "models" / "vqa").is_dir():
        print("training the VQA model for /ask (once) ...", file=sys.stderr)
        command = [sys.executable, "-m", "ui.cli", "train", "vqa"]
        done = subprocess.run(command, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        if done.returncode:
            print(
                f"no VQA model ({done.stderr.decode()[-300:].strip()}): /ask may be left out", file=sys.stderr
            )


@contextmanager
def served(home: Path, data: Path | None, start_timeout: float = 300.0, workers: int = 1) -> Iterator[str]:
    """`medsearch serve --no-web [--workers N]` on a free loopback port for the `with` block; yields its URL once
    every worker process answers /health."""
    env = {**os.environ, "MEDSEARCH_HOME": str(home), "PYTHONPATH": str(REPO)}
    if data:
        env["MEDSEARCH_DATA"] = str(data)
    _prepare_home(home, data, env)
    args = ["--no-web", "--workers", str(workers)]
    with serving.running(env, args, processes=workers, timeout=start_timeout) as url:
        yield url


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=60.0, help="seconds of load (default 60)")
    parser.add_argument("--clients", type=int, default=50, help="concurrent clients (default 50)")
    parser.add_argument("--url", default=None, help="a running server on loopback (default: start one)")
    parser.add_argument("--home", type=Path, default=None, help="home for the started server")
    parser.add_argument("--data", type=Path, default=None, help="shared data folder (for the first ingest)")
    parser.add_argument("--workers", type=int, default=1, help="API worker processes of the started server")
    parser.add_argument(
        "--out", type=Path, default=None, help="default benchmarks/results/soak[_workersN].json"
    )
    args = parser.parse_args(argv)
    suffix = f"_workers{args.workers}" if args.workers > 1 else ""
    args.out = args.out or REPO / "benchmarks" / "results" / f"soak{suffix}.json"

    if args.url:
        result = {"server": "given URL (loopback)", **run_soak(args.url, args.duration, args.clients)}
    else:
        home = args.home
        with (
            tempfile.TemporaryDirectory() as scratch,
            served(home or Path(scratch), args.data, workers=args.workers) as url,
        ):
            workers = f" --workers {args.workers}" if args.workers > 1 else ""
            result = {"server": f"medsearch serve --no-web{workers} (subprocess, loopback)"}
            result |= run_soak(url, args.duration, args.clients)
    if result["ask_included"]:
        print("/ask included in the mix (1 request in 4)")
    else:
        print(f"search only: /ask {result['ask_unavailable'] or 'is not in the OpenAPI schema'}")
    print(json.dumps(result, indent=1))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    return 0 if result["errors"] == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
