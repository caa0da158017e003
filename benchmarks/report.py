"""Report drafting on the held-out MedPix cases of "medsearch-val-v1": ROUGE-L, BLEU-4 and concept F1 of the
consensus draft against copy-nearest and copy-random (see `engine.evaluation.report_eval`).

    python benchmarks/report.py [--home DIR] [--data DIR] [--out results.json] [--k 5] [--seed 0]
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from engine.evaluation.report_eval import format_report_table, run_report_benchmark  # noqa: E402
from engine.settings import Settings  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    settings = Settings()
    parser.add_argument(
        "--home", type=Path, default=Path(settings.home), help="medsearch home (models/, kg/ inside)"
    )
    parser.add_argument("--data", type=Path, default=settings.data, help="shared datasets folder")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "report.json")
    parser.add_argument("--k", type=int, default=5, help="cases each draft is composed from")
    parser.add_argument("--seed", type=int, default=0, help="seed of the copy-random baseline")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if args.data is None or not Path(args.data).is_dir():
        parser.error("shared data folder not found: pass --data or set MEDSEARCH_DATA")
    results = run_report_benchmark(args.home, args.data, args.out, k=args.k, seed=args.seed)
    print(f"held-out split: {results['split']} ({results['split_rule']})")
    print(
        f"{results['n_cases']} held-out MedPix cases ({results['n_query_images']} query images); gallery "
        f"{results['gallery']['cases']} cases; encoders {results['encoders']}; k={results['k']}\n"
    )
    print(format_report_table(results))
    print(f"\nsaved {args.out}")


if __name__ == "__main__":
    main()
