"""Closed-set VQA on VQA-RAD (5 image-grouped folds over train) and SLAKE (official train -> validation).

The trained answer head over MiniLM question + clip / ssl image embeddings, combined with a kNN vote of the
most similar training (image, question) pairs, beside the majority and question-only baselines (TF-IDF + LR,
MiniLM + LR) and the ablations (no retrieval, no images, retrieval only), all measured in this run. No KG
system: the knowledge graph is not wired into VQA yet. Saves JSON and prints a table.

    python benchmarks/vqa.py [--home DIR] [--data DIR] [--out results.json] [--datasets vqa-rad slake]
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402

from engine.encoders import Encoder  # noqa: E402
from engine.settings import Settings  # noqa: E402
from engine.vqa import VqaFeatures, encode_features, evaluate_vqa, vqa_items  # noqa: E402
from engine.vqa.evaluate import SYSTEMS  # noqa: E402


def format_table(results: dict) -> str:
    """One row per (dataset, system): closed / open / overall accuracy in percent and the counts."""
    lines = [f"{'dataset':<9} {'system':<24} {'closed':>7} {'open':>7} {'overall':>8}   n_closed n_open"]
    for name, result in results["datasets"].items():
        for system in SYSTEMS:
            row = result["systems"][system]
            lines.append(
                f"{name:<9} {system:<24} {100 * row['closed']:>7.1f} {100 * row['open']:>7.1f} "
                f"{100 * row['overall']:>8.1f}   {row['n_closed']:>8} {row['n_open']:>6}"
            )
    return "\n".join(lines)


def targets(results: dict) -> list[str]:
    """The issue's targets: closed >= +5 points and overall >= +8 points over the best question-only baseline."""
    lines = []
    for name, result in results["datasets"].items():
        systems = result["systems"]
        ours = systems["head+retrieval"]
        for metric, target in (("closed", 5.0), ("overall", 8.0)):
            best = max(systems[s][metric] for s in ("question-tfidf-lr", "question-minilm-lr"))
            gain = 100 * (ours[metric] - best)
            verdict = "met" if gain >= target else "NOT met"
            lines.append(
                f"{name}: {metric} {gain:+.1f} points over best question-only (target +{target:.0f}): {verdict}"
            )
    return lines


def cached_features(
    cache: Path | None, name: str, items: list, text_encoder: Encoder, image_encoders: dict[str, Encoder]
) -> VqaFeatures:
    """Features of `items`, read from / written to ``<cache>/<name>.npz`` when a cache folder is given."""
    path = cache / f"{name}.npz" if cache else None
    if path is not None and path.is_file():
        stored = np.load(path)
        if list(stored["qids"]) == [item.qid for item in items]:
            images = {key[6:]: stored[key] for key in stored.files if key.startswith("image:")}
            if sorted(images) == sorted(image_encoders):
                return VqaFeatures(stored["question"], images)
    features = encode_features(items, text_encoder, image_encoders)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        blocks = {f"image:{space}": block for space, block in features.images.items()}
        np.savez(path, qids=np.array([item.qid for item in items]), question=features.question, **blocks)
    return features


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    settings = Settings()
    parser.add_argument(
        "--home", type=Path, default=Path(settings.home), help="medsearch home (models/ inside)"
    )
    parser.add_argument("--data", type=Path, default=settings.data, help="shared datasets folder")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "vqa.json")
    parser.add_argument("--datasets", nargs="+", default=["vqa-rad", "slake"], choices=["vqa-rad", "slake"])
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--cache", type=Path, default=None, help="folder to keep encoded features in (reruns)"
    )
    parser.add_argument("--k", type=int, default=10, help="neighbours in the kNN vote")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if args.data is None or not Path(args.data).is_dir():
        parser.error("shared data folder not found: pass --data or set MEDSEARCH_DATA")
    from engine.datasets import load
    from engine.encoders import create

    started = time.perf_counter()
    text_encoder = create("minilm")
    image_encoders = {
        space: create(f"trained:{args.home / 'models' / space}")
        for space in ("clip", "ssl")
        if (args.home / "models" / space / "config.json").is_file()
    }
    if not image_encoders:
        print(f"no trained image encoders under {args.home / 'models'}: image systems use questions only")
    datasets = {}
    for name in args.datasets:
        items = vqa_items(load(name, args.data / name), name)
        datasets[name] = (items, cached_features(args.cache, name, items, text_encoder, image_encoders))
        print(f"{name}: {len(items)} questions encoded ({time.perf_counter() - started:.0f}s)")
    results = evaluate_vqa(datasets, n_folds=args.folds, seed=args.seed, k=args.k)
    results["image_spaces"] = sorted(image_encoders)
    results["seconds"] = round(time.perf_counter() - started, 1)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2))
    for name, result in results["datasets"].items():
        print(f"{name}: {result['protocol']}, {result['n_test']} test questions, spaces {result['spaces']}")
    print()
    print(format_table(results))
    print()
    print("\n".join(targets(results)))
    print("\n".join(f"note: {note}" for note in results["notes"]))
    print(f"\nsaved {args.out} ({results['seconds']:.0f}s)")


if __name__ == "__main__":
    main()
