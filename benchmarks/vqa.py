"""Closed-set VQA on VQA-RAD (5 image-grouped folds over train) and SLAKE (official train -> validation).

The trained answer head over MiniLM question + clip / ssl image embeddings, combined with a kNN vote of the
most similar training (image, question) pairs, beside the majority and question-only baselines (TF-IDF + LR,
MiniLM + LR) and the ablations (no graph, no retrieval, no images, retrieval only), all measured in this run.
The engine's system adds knowledge-graph facts for knowledge questions (SLAKE kvqa). Saves JSON and prints a
table. Same as `medsearch eval vqa`.

    python benchmarks/vqa.py [--home DIR] [--data DIR] [--out results.json] [--datasets vqa-rad slake]
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from engine.evaluation.vqa_eval import DATASETS, format_table, run_vqa_benchmark  # noqa: E402
from engine.settings import Settings  # noqa: E402


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
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=list(DATASETS))
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--cache", type=Path, default=None, help="folder to keep encoded features in (reruns)"
    )
    parser.add_argument("--k", type=int, default=10, help="neighbours in the kNN vote")
    parser.add_argument("--no-graph", action="store_true", help="leave the knowledge graph out")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    for noisy in ("engine.vqa", "engine.encoders", "kg"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    if args.data is None or not Path(args.data).is_dir():
        parser.error("shared data folder not found: pass --data or set MEDSEARCH_DATA")
    results = run_vqa_benchmark(
        args.home.resolve(),
        Path(args.data).resolve(),
        args.out,
        datasets=args.datasets,
        folds=args.folds,
        seed=args.seed,
        k=args.k,
        cache=args.cache,
        graph=not args.no_graph,
    )
    print(format_table(results))
    print(f"\nsaved {args.out} ({results['seconds']:.0f}s)")


if __name__ == "__main__":
    main()
