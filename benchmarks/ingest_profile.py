"""Ingest throughput and where its time goes: images/s and reports/s end to end, split into stages.

Ingests real shared data into a fresh temporary home with the real encoders: text `minilm`; image spaces
`trained:<models>/clip` and `trained:<models>/ssl` when those checkpoints exist under `--models` (else a
raw-pixel stand-in, labelled as such in the output). Images: VQA-RAD (or SLAKE); reports: IU X-ray.

Stages: decode (image files -> pixels), forward (time inside the models' forward passes, measured by wrapping
each model's `forward`), encode-other (tokenisation, letterboxing, tensor conversion: encode minus forward),
link (knowledge-graph concept linking), write (SQLite), index (vector + BM25 index build and save), other
(wall time not in a stage). Each dataset is ingested twice, into separate homes: `before` (no prefetch: each
batch is decoded, then encoded) and `after` (the default: the next batch decodes on the pool while this one
is encoded), so the two are measured in the same run on the same machine.

    python benchmarks/ingest_profile.py [--models .medsearch/models] [--images vqa-rad] [--limit-images N]
        [--limit-reports N] [--out benchmarks/results/ingest_profile.json] [--quick]
"""

from __future__ import annotations

import argparse
import functools
import json
import logging
import os
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from engine.evaluation import portable  # noqa: E402
from engine.settings import Settings  # noqa: E402

logger = logging.getLogger("benchmarks.ingest_profile")

TARGET_FORWARD_FRACTION = 0.9


class ForwardClock:
    """Sums the seconds spent inside wrapped `forward` methods (nested calls count once)."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self._depth = 0

    def wrap(self, module: Any) -> None:
        inner = module.forward

        @functools.wraps(inner)
        def timed(*args: Any, **kwargs: Any) -> Any:
            self._depth += 1
            started = time.perf_counter()
            try:
                return inner(*args, **kwargs)
            finally:
                self._depth -= 1
                if self._depth == 0:
                    self.seconds += time.perf_counter() - started

        module.forward = timed


class PixelStandIn:
    """Fallback image encoder when no trained checkpoint exists: 32x32 grey thumbnails (no model forward)."""

    dim = 1024
    space = "clip"
    modalities = frozenset({"image"})
    name = "pixels-fallback"

    def encode_images(self, images: Sequence[Any]) -> np.ndarray:
        from engine.encoders.images import pixel_thumbnails

        return pixel_thumbnails(list(images), 32)

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        raise NotImplementedError


def build_encoders(models: Path) -> tuple[dict[str, Any], ForwardClock, dict[str, str]]:
    """space -> encoder (MiniLM text; trained clip/ssl when present), a clock on every forward, and labels."""
    from engine.encoders import create

    clock = ForwardClock()
    minilm = create("minilm")
    clock.wrap(minilm.model)
    encoders: dict[str, Any] = {"text": minilm}
    labels = {"text": "minilm (all-MiniLM-L6-v2)"}
    for space in ("clip", "ssl"):
        folder = models / space
        if (folder / "config.json").is_file():
            encoder = create(f"trained:{folder.resolve()}", text_encoder=minilm)
            clock.wrap(encoder.tower)
            if encoder.text_projection is not None:
                clock.wrap(encoder.text_projection)
            encoders[space] = encoder
            labels[space] = f"trained:<models>/{space} ({encoder.config.get('backbone')})"
    if not any(space in encoders for space in ("clip", "ssl")):
        encoders["clip"] = PixelStandIn()
        labels["clip"] = "FALLBACK: raw 32x32 pixels (no trained checkpoint under --models; no model forward)"
    return encoders, clock, labels


def profile_one(
    name: str,
    records: Sequence[Any],
    encoders: dict[str, Any],
    clock: ForwardClock,
    linker: Callable | None,
    prefetch: bool,
    batch_size: int,
    decode_workers: int,
) -> dict[str, Any]:
    """Ingest `records` into a fresh collection; returns throughput and the stage split."""
    from engine.collection import Collection
    from engine.ingest import ingest_records

    with tempfile.TemporaryDirectory(prefix="medsearch-ingest-") as home:
        collection = Collection.open(Path(home), "bench", create=True)
        clock.seconds = 0.0
        started, cpu_started, load_before = time.perf_counter(), time.process_time(), os.getloadavg()[0]
        summary = ingest_records(
            collection,
            list(records),
            encoders,
            source=name,
            batch_size=batch_size,
            decode_workers=decode_workers,
            linker=linker,
            progress=False,
            prefetch=prefetch,
        )
        wall = time.perf_counter() - started
        cpu = time.process_time() - cpu_started
        collection.close()
    seconds = dict(summary.seconds)
    forward = clock.seconds
    stages = {
        "decode": seconds.get("read", 0.0),
        "forward": forward,
        "encode_other": max(0.0, seconds.get("encode", 0.0) - forward),
        "link": seconds.get("link", 0.0),
        "write": seconds.get("write", 0.0),
        "index": seconds.get("index", 0.0),
    }
    stages["other"] = max(0.0, wall - sum(stages.values()))
    return {
        "records": summary.added,
        "failed_images": len(summary.failed),
        "wall_seconds": round(wall, 2),
        "records_per_second": round(summary.added / wall, 2),
        "seconds": {k: round(v, 2) for k, v in stages.items()},
        "fraction": {k: round(v / wall, 3) for k, v in stages.items()},
        "forward_fraction": round(forward / wall, 3),
        # how much CPU this process got: on a machine busy with other work, wall >> cpu / cores
        "cpu_seconds": round(cpu, 2),
        "load_average": round((load_before + os.getloadavg()[0]) / 2, 1),
    }


def load_records(data: Path, images: str, limit_images: int, limit_reports: int) -> dict[str, list[Any]]:
    from engine import datasets

    image_records = datasets.load(images, data / images)[:limit_images]
    reports = datasets.load("iu-xray", data / "iu-xray")[:limit_reports]
    return {"images": image_records, "reports": reports}


def run(args: argparse.Namespace) -> dict[str, Any]:
    from engine.knowledge import Knowledge

    settings = Settings()
    data = Path(args.data or settings.data or REPO.parent / "shared" / "data")
    models = Path(args.models)
    encoders, clock, labels = build_encoders(models)
    with tempfile.TemporaryDirectory(prefix="medsearch-kg-") as kg_cache:
        knowledge = Knowledge.load(Path(kg_cache), data) if not args.no_kg else None
        linker = knowledge.link_records if knowledge else None
        sets = load_records(data, args.images, args.limit_images, args.limit_reports)
        warm = sets["images"][:4] + sets["reports"][:4]  # first forward passes pay one-off allocations
        profile_one("warm-up", warm, encoders, clock, linker, True, args.batch_size, args.decode_workers)
        results: dict[str, Any] = {}
        for kind, records in sets.items():
            source = args.images if kind == "images" else "iu-xray"
            for variant, prefetch in (("before", False), ("after", True)):
                result = profile_one(
                    source, records, encoders, clock, linker, prefetch, args.batch_size, args.decode_workers
                )
                results.setdefault(kind, {})[variant] = result
                logger.info("%s %s: %s", kind, variant, result)
    return {
        "benchmark": "ingest throughput and stage profile (end to end, fresh collection per run)",
        "data": {
            "images": f"{args.images} ({len(sets['images'])} image records)",
            "reports": f"iu-xray ({len(sets['reports'])} reports)",
        },
        "encoders": labels,
        "knowledge_graph_linking": not args.no_kg,
        "batch_size": args.batch_size,
        "decode_workers": args.decode_workers,
        "machine": {"cpus": os.cpu_count(), "torch_threads": _torch_threads()},
        "images_per_second": {v: results["images"][v]["records_per_second"] for v in ("before", "after")},
        "reports_per_second": {v: results["reports"][v]["records_per_second"] for v in ("before", "after")},
        "forward_fraction": {
            kind: {v: results[kind][v]["forward_fraction"] for v in ("before", "after")} for kind in results
        },
        "target_forward_fraction": TARGET_FORWARD_FRACTION,
        "runs": results,
    }


def _torch_threads() -> int:
    import torch

    return torch.get_num_threads()


def print_table(result: dict[str, Any]) -> None:
    print(f"encoders: {result['encoders']}")
    header = f"{'set':<8}{'run':<8}{'rec':>6}{'rec/s':>8}{'fwd%':>6}"
    stages = ("decode", "forward", "encode_other", "link", "write", "index", "other")
    print(header + "".join(f"{s[:8]:>9}" for s in stages))
    for kind, runs in result["runs"].items():
        for variant, run_result in runs.items():
            row = f"{kind:<8}{variant:<8}{run_result['records']:>6}{run_result['records_per_second']:>8.1f}"
            row += f"{100 * run_result['forward_fraction']:>6.0f}"
            print(row + "".join(f"{run_result['seconds'][s]:>9.2f}" for s in stages))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=str(REPO / ".medsearch" / "models"), help="trained checkpoints")
    parser.add_argument("--data", help="shared data folder (default: Settings().data)")
    parser.add_argument("--images", default="vqa-rad", choices=("vqa-rad", "slake"))
    parser.add_argument("--limit-images", type=int, default=100_000)
    parser.add_argument("--limit-reports", type=int, default=100_000)
    parser.add_argument("--batch-size", type=int, default=Settings.model_fields["ingest_batch_size"].default)
    parser.add_argument("--decode-workers", type=int, default=Settings.model_fields["decode_workers"].default)
    parser.add_argument("--no-kg", action="store_true", help="skip concept linking")
    parser.add_argument("--torch-threads", type=int, help="torch intra-op threads (default: torch's choice)")
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "ingest_profile.json"))
    parser.add_argument("--quick", action="store_true", help="40 images, 60 reports, no knowledge graph")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    if args.quick:
        args.limit_images, args.limit_reports, args.no_kg, args.batch_size = 40, 60, True, 16
    if args.torch_threads:
        import torch

        torch.set_num_threads(args.torch_threads)
    result = run(args)
    print_table(result)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    roots = {"<models>": Path(args.models), "<repo>": REPO}
    out.write_text(json.dumps(portable(result, roots), indent=1) + "\n")
    print(f"saved {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
