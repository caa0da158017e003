"""Knowledge-graph benchmark on the shared IU X-ray reports (same code as `medsearch eval kg`).

(a) concept linking P/R/F1 against the manual MeSH `Problems` column; (b) finding search with clinical and lay
wordings (benchmarks/kg_queries.json): MAP and P@10 of random, keyword, dense, hybrid and hybrid+KG in one run,
plus how many of the top 10 deny the finding.

    python benchmarks/kg.py [--home DIR] [--data DIR] [--out benchmarks/results/kg.json]
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from engine.evaluation.kg_eval import SYSTEMS, evaluate_kg  # noqa: E402
from engine.settings import Settings  # noqa: E402
from engine.workspace import Workspace, require_data_dir  # noqa: E402


def print_report(result: dict) -> None:
    """The tables of an `evaluate_kg` result."""
    print("linking vs IU Problems (positive mentions):")
    for split in ("all", "train", "validation", "test"):
        s = result["linking"][split]
        print(
            f"  {split:<10} P {s['precision']:.3f}  R {s['recall']:.3f}  F1 {s['f1']:.3f}  ({s['reports']} reports)"
        )
    for style, table in result["search"].items():
        print(
            f"\nfinding search, {style} wordings ({table['queries']} queries): MAP / P@10 / denying in top 10"
        )
        for system in SYSTEMS:
            m = table[system]
            print(f"  {system:<10} {m['MAP']:.3f} / {m['P@10']:.3f} / {m['denying_in_top10']:.2f}")
        print(f"  hybrid+kg MAP / keyword MAP = {table['hybrid+kg_over_keyword_MAP']:.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--home", type=Path, default=REPO / ".medsearch-bench")
    parser.add_argument("--data", type=Path, default=None)
    parser.add_argument("--queries", type=Path, default=REPO / "benchmarks" / "kg_queries.json")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "kg.json")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    settings = Settings(home=args.home, **({"data": args.data} if args.data else {}))
    with Workspace(settings) as workspace:
        result = evaluate_kg(workspace, args.queries, require_data_dir(settings) / "iu-xray")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))
    print_report(result)
    print(f"\nsaved {args.out} ({result['seconds']}s)")


if __name__ == "__main__":
    main()
