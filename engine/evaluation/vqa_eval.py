"""`run_vqa_benchmark`: VQA-RAD (image-grouped folds over train) and SLAKE (train -> validation) with every system
of `engine.vqa.evaluate.SYSTEMS`, shared by `medsearch eval vqa` and `benchmarks/vqa.py`."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import numpy as np

from engine.encoders import Encoder
from engine.vqa import VqaFeatures, encode_features, evaluate_vqa, vqa_items
from engine.vqa.evaluate import SYSTEMS

logger = logging.getLogger(__name__)

DATASETS: tuple[str, ...] = ("vqa-rad", "slake")


def format_table(results: dict) -> str:
    """One row per (dataset, system): closed / open / overall accuracy in percent and the counts."""
    lines = [
        f"{'dataset':<9} {'system':<24} {'closed':>7} {'open':>7} {'overall':>8} {'knowl.':>7}"
        "   n_closed n_open n_knowl."
    ]
    for name, result in results["datasets"].items():
        for system in SYSTEMS:
            row = result["systems"][system]
            lines.append(
                f"{name:<9} {system:<24} {100 * row['closed']:>7.1f} {100 * row['open']:>7.1f} "
                f"{100 * row['overall']:>8.1f} {100 * row['knowledge']:>7.1f}"
                f"   {row['n_closed']:>8} {row['n_open']:>6} {row['n_knowledge']:>8}"
            )
    lines += category_table(results)
    lines.append("")
    lines += [
        f"{name}: {result['protocol']}, {result['n_test']} test questions"
        for name, result in results["datasets"].items()
    ]
    lines += results.get("targets") or targets(results)
    lines += [f"note: {note}" for note in results.get("notes", [])]
    return "\n".join(lines)


CATEGORY_SYSTEMS: tuple[str, ...] = ("question-minilm-lr", "ablation-no-images", "head+retrieval+graph")


def category_table(results: dict, min_questions: int = 20) -> list[str]:
    """Accuracy per question category (categories with at least `min_questions` test questions): where the
    images and the graph help, beside the question-only baseline and the no-images ablation."""
    lines = []
    for name, result in results["datasets"].items():
        by_category = result.get("by_category")
        if not by_category:
            continue
        lines += ["", f"{name}: accuracy % per question category (" + " / ".join(CATEGORY_SYSTEMS) + ")"]
        for category, row in by_category[CATEGORY_SYSTEMS[-1]].items():
            if row["n"] < min_questions:
                continue
            cells = " ".join(
                f"{100 * by_category[system][category]['accuracy']:>6.1f}" for system in CATEGORY_SYSTEMS
            )
            lines.append(f"  {category:<12} n={row['n']:<5} {cells}")
    return lines


def targets(results: dict) -> list[str]:
    """The issue's targets: closed >= +5 points and overall >= +8 points over the best question-only baseline."""
    lines = []
    for name, result in results["datasets"].items():
        systems = result["systems"]
        ours = systems["head+retrieval+graph"]
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


def run_vqa_benchmark(
    home: Path,
    data: Path,
    out: Path | None = None,
    *,
    datasets: tuple[str, ...] | list[str] = DATASETS,
    folds: int = 5,
    seed: int = 0,
    k: int = 10,
    cache: Path | None = None,
    graph: bool = True,
    limit_images: int | None = None,
) -> dict[str, Any]:
    """Encode the questions (MiniLM) and images (this home's trained clip / ssl encoders, when present), evaluate
    every system, save JSON to `out` when given. `limit_images` keeps the first N images per dataset (tests)."""
    from engine.datasets import load
    from engine.encoders import create
    from engine.evaluation import portable, write_results

    started = time.perf_counter()
    text_encoder = create("minilm")
    image_encoders = {
        space: create(f"trained:{home / 'models' / space}")
        for space in ("clip", "ssl")
        if (home / "models" / space / "config.json").is_file()
    }
    if not image_encoders:
        logger.warning(
            "no trained image encoders under %s: image systems use questions only", home / "models"
        )
    encoded = {}
    for name in datasets:
        items = vqa_items(load(name, data / name), name)
        if limit_images is not None:
            keep = set(sorted({item.record_id for item in items})[:limit_images])
            items = [item for item in items if item.record_id in keep]
        encoded[name] = (items, cached_features(cache, name, items, text_encoder, image_encoders))
        logger.info("%s: %d questions encoded (%.0fs)", name, len(items), time.perf_counter() - started)
    knowledge_graph = None
    if graph:
        from engine.knowledge import Knowledge

        knowledge_graph = Knowledge.load(home / "kg", data).graph
    results = evaluate_vqa(encoded, n_folds=folds, seed=seed, k=k, graph=knowledge_graph)
    results["image_spaces"] = sorted(image_encoders)
    results["targets"] = targets(results)
    results["seconds"] = round(time.perf_counter() - started, 1)
    if out is not None:
        write_results(out, portable(results, {"<home>": home, "<data>": data}), indent=2)
    return results
