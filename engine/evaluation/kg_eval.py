"""`medsearch eval kg`: concept linking and finding search on the shared IU X-ray reports, baselines beside.

(a) Linking: precision / recall / F1 of positive finding mentions against the manual MeSH `Problems` indexing
    (mapping rule in `kg.evaluate`), per R2Gen split.
(b) Finding search: the wordings of `benchmarks/kg_queries.json` (clinical and lay, 20+ findings); a report is
    relevant when its `Problems` hold one of the finding's terms. MAP (top 1000) and P@10 of random, keyword,
    dense, hybrid and hybrid+KG in one run, and how many of the top 10 *deny* the finding (a negated mention of
    it and no positive one, by the linker) without being relevant.
"""

from __future__ import annotations

import json
import logging
import random
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from engine.datasets import load
from engine.evaluation import portable
from engine.evaluation.ranking import average_precision, precision_at
from engine.search import SearchRequest
from engine.settings import REPO_ROOT
from engine.workspace import Workspace
from kg.evaluate import linking_scores

logger = logging.getLogger(__name__)

DEPTH = 1000
SYSTEMS = ("random", "keyword", "dense", "hybrid", "hybrid+kg")
COLLECTION = "bench-iu-xray"


def _linking(workspace: Workspace, records: Sequence[Any]) -> dict[str, Any]:
    knowledge = workspace.knowledge()
    out: dict[str, Any] = {}
    for split in ("all", "train", "validation", "test"):
        chosen = [r for r in records if split == "all" or r.split == split]
        pairs = [(" ".join(p for p in (r.findings, r.impression) if p), list(r.labels)) for r in chosen]
        scores = linking_scores(knowledge.graph, knowledge.linker, pairs)
        out[split] = {key: scores[key] for key in ("precision", "recall", "f1", "tp", "fp", "fn", "reports")}
        if split == "all":
            out["mapped_terms"] = scores.get("mapped_terms")
            out["unmapped_terms"] = scores.get("unmapped_terms")
    return out


def _denies(workspace: Workspace, collection: Any, query: str, ids: Sequence[str]) -> set[str]:
    """Those of `ids` that deny a concept of `query` (negated mention, no positive one)."""
    knowledge = workspace.knowledge()
    constraints = [c for c in knowledge.constraints(query) if c.polarity == "present"]
    mentions = collection.concepts_of(list(ids))
    return {
        record_id
        for record_id in ids
        if any(knowledge.evidence(c, mentions.get(record_id, [])).denials for c in constraints)
    }


def _search_runs(
    workspace: Workspace, queries: dict[str, Any], records: Sequence[Any]
) -> list[dict[str, Any]]:
    service = workspace.search_service(COLLECTION)
    collection = workspace.collection(COLLECTION)
    all_ids = [r.id for r in records]
    rng = random.Random(0)
    rows = []
    for finding in queries["findings"]:
        relevant = {r.id for r in records if set(finding["problems"]) & set(r.labels)}
        for query in finding["queries"]:
            row: dict[str, Any] = {
                "finding": finding["id"],
                "query": query["text"],
                "style": query["style"],
                "relevant": len(relevant),
            }
            runs = {"random": rng.sample(all_ids, min(DEPTH, len(all_ids)))}
            for system, mode, use_kg in (
                ("keyword", "keyword", False),
                ("dense", "dense", False),
                ("hybrid", "hybrid", False),
                ("hybrid+kg", "hybrid", True),
            ):
                hits = service.search(SearchRequest(text=query["text"], k=DEPTH, mode=mode, use_kg=use_kg))
                runs[system] = [h.id for h in hits]
            for system, ranked in runs.items():
                top = ranked[:10]
                denying = _denies(workspace, collection, query["text"], top) - relevant
                row[system] = {
                    "AP": average_precision(ranked, relevant),
                    "P@10": precision_at(ranked, relevant),
                    "denying_in_top10": len(denying),
                }
            rows.append(row)
    return rows


def _summarise(rows: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for style in ("all", "clinical", "lay"):
        chosen = [r for r in rows if style == "all" or r["style"] == style]
        if not chosen:
            continue
        out[style] = {
            system: {
                "MAP": float(np.mean([r[system]["AP"] for r in chosen])),
                "P@10": float(np.mean([r[system]["P@10"] for r in chosen])),
                "denying_in_top10": float(np.mean([r[system]["denying_in_top10"] for r in chosen])),
            }
            for system in SYSTEMS
        }
        out[style]["queries"] = len(chosen)
        keyword_map = out[style]["keyword"]["MAP"]
        out[style]["hybrid+kg_over_keyword_MAP"] = (
            out[style]["hybrid+kg"]["MAP"] / keyword_map if keyword_map else None
        )
    return out


def evaluate_kg(workspace: Workspace, queries_path: Path, iu_folder: Path) -> dict[str, Any]:
    """Run (a) and (b) on the IU X-ray folder; ingests it into the `bench-iu-xray` collection when needed."""
    started = time.perf_counter()
    workspace.ingest("iu-xray", iu_folder, collection=COLLECTION, progress=False)
    if not workspace.collection(COLLECTION).has_concepts():
        workspace.relink(COLLECTION)
    records = load("iu-xray", iu_folder)
    queries = json.loads(Path(queries_path).read_text())
    linking = _linking(workspace, records)
    rows = _search_runs(workspace, queries, records)
    result = {
        "benchmark": "kg",
        "data": f"IU X-ray reports ({len(records)} shared studies)",
        "queries": str(queries_path),
        "depth": DEPTH,
        "graph": workspace.knowledge().graph.stats(),
        "linking": linking,
        "search": _summarise(rows),
        "per_query": rows,
        "seconds": round(time.perf_counter() - started, 1),
    }
    return portable(result, {"<data>": Path(iu_folder).parent, "<repo>": REPO_ROOT})
