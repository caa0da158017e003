"""Finding search over the shared IU X-ray reports: keyword (BM25) vs dense (MiniLM) vs hybrid (RRF), one run.

Relevance comes from the manual MeSH indexing in the `Problems` column: a report is relevant to a finding when its
Problems list holds the finding's term. Each finding is queried by its clinical name. Metrics: P@10 and MAP
(average precision over the top 1000, the usual trec_eval depth), plus a random-ranking baseline.

    python benchmarks/text_search.py [--home DIR] [--data DIR] [--out benchmarks/results/text_search.json]
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from engine.evaluation.ranking import average_precision, precision_at  # noqa: E402
from engine.search import SearchRequest  # noqa: E402
from engine.settings import Settings  # noqa: E402
from engine.workspace import Workspace, require_data_dir  # noqa: E402

# (IU `Problems` term defining relevance, query text as a radiologist would type it)
FINDINGS: tuple[tuple[str, str], ...] = (
    ("Cardiomegaly", "cardiomegaly"),
    ("Pulmonary Atelectasis", "atelectasis"),
    ("Calcified Granuloma", "calcified granuloma"),
    ("Pleural Effusion", "pleural effusion"),
    ("Opacity", "lung opacity"),
    ("Cicatrix", "scarring"),
    ("Airspace Disease", "airspace disease"),
    ("Nodule", "pulmonary nodule"),
    ("Scoliosis", "scoliosis"),
    ("Atherosclerosis", "atherosclerotic aorta"),
    ("Granulomatous Disease", "granulomatous disease"),
    ("Fractures, Bone", "rib fracture"),
    ("Pulmonary Congestion", "pulmonary vascular congestion"),
    ("Emphysema", "emphysema"),
    ("Hernia, Hiatal", "hiatal hernia"),
    ("Pulmonary Edema", "pulmonary edema"),
    ("Pneumothorax", "pneumothorax"),
)
DEPTH = 1000


def relevance_sets(workspace: Workspace, collection: str) -> tuple[dict[str, set[str]], list[str]]:
    from engine.datasets import load

    records = [r for r in load("iu-xray", require_data_dir(workspace.settings) / "iu-xray")]
    relevant = {term: {r.id for r in records if term in r.labels} for term, _ in FINDINGS}
    return relevant, [r.id for r in records]


def run(home: Path, data: Path | None, out: Path) -> dict:
    settings = Settings(home=home, **({"data": data} if data else {}))
    collection = "bench-iu-xray"
    with Workspace(settings) as workspace:
        started = time.perf_counter()
        summary = workspace.ingest(
            "iu-xray", require_data_dir(settings) / "iu-xray", collection=collection, progress=False
        )
        ingest_seconds = time.perf_counter() - started
        relevant, all_ids = relevance_sets(workspace, collection)
        service = workspace.search_service(collection)
        rng = random.Random(0)
        per_query: list[dict] = []
        for term, query in FINDINGS:
            row = {"finding": term, "query": query, "relevant": len(relevant[term])}
            for mode in ("keyword", "dense", "hybrid"):
                hits = service.search(SearchRequest(text=query, k=DEPTH, mode=mode, use_kg=False))
                ranked = [h.id for h in hits]
                row[mode] = {
                    "P@10": precision_at(ranked, relevant[term]),
                    "AP": average_precision(ranked, relevant[term]),
                }
            shuffled = rng.sample(all_ids, DEPTH)
            row["random"] = {
                "P@10": precision_at(shuffled, relevant[term]),
                "AP": average_precision(shuffled, relevant[term]),
            }
            per_query.append(row)
    systems = ("random", "keyword", "dense", "hybrid")
    summary_table = {
        s: {
            "P@10": float(np.mean([q[s]["P@10"] for q in per_query])),
            "MAP": float(np.mean([q[s]["AP"] for q in per_query])),
        }
        for s in systems
    }
    result = {
        "benchmark": "text_search",
        "data": "shared IU X-ray reports (all 3,441 shared studies)",
        "relevance": "IU `Problems` (manual MeSH) contains the finding term",
        "depth": DEPTH,
        "n_queries": len(per_query),
        "ingest": {**summary.as_dict(), "wall_seconds": round(ingest_seconds, 2)},
        "summary": summary_table,
        "per_query": per_query,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    return result


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--home", type=Path, default=REPO / ".medsearch-bench")
    parser.add_argument("--data", type=Path, default=None, help="shared data folder (default: settings)")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "text_search.json")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    result = run(args.home, args.data, args.out)
    print(
        f"{'finding':<26}{'n':>5}  " + "  ".join(f"{s:>15}" for s in ("random", "keyword", "dense", "hybrid"))
    )
    for q in result["per_query"]:
        cells = "  ".join(
            f"{q[s]['P@10']:.2f} / {q[s]['AP']:.3f}" for s in ("random", "keyword", "dense", "hybrid")
        )
        print(f"{q['finding']:<26}{q['relevant']:>5}  {cells}")
    print("\nmean (P@10 / MAP):")
    for system, metrics in result["summary"].items():
        print(f"  {system:<8} P@10 {metrics['P@10']:.3f}  MAP {metrics['MAP']:.3f}")
    print(f"\ningest of IU X-ray: {result['ingest']['wall_seconds']}s; saved {args.out}")


if __name__ == "__main__":
    main()
