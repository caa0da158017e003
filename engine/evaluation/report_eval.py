"""Report drafting evaluation on the held-out MedPix cases of "medsearch-val-v1".

Queries: every MedPix case held out by `engine.training.data.medpix_case_held_out` that has images (all
shipped images are official *dev* cases; the trained encoders never saw the held-out half). A case's query is
all its images (their vectors averaged per space). Reference: the case's findings + " " + its diagnosis.
Index (gallery): every other MedPix case with report text, i.e. all official train cases (shipped as text
only: found through the clip space's text tower from their image captions) and the non-held-out dev cases
(found by image in the clip and ssl spaces); never an evaluated case. Methods, all on the same retrieved neighbours:

- ours: consensus draft (`ReportDrafter.compose`) from the top k cases (one body region, `coherent_subset`);
  "regions mixed" composes from all k, "k=3" / "k=10" show the sensitivity to k;
- copy-nearest: the top-1 case's findings + diagnosis;
- copy-random: a seeded random gallery case's findings + diagnosis;
- text-only variants: the same with the case's clinical history (indication) as the query, MiniLM cosine over
  the gallery cases' text.

Metrics (`engine.evaluation.text_metrics`): ROUGE-L F, corpus BLEU-4 (smoothed) and concept F1 through the KG
linker (asserted concepts; negated mentions excluded), plus the polarity-aware concept F1.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from engine.datasets.record import Record
from engine.encoders.base import Encoder, l2_normalise
from engine.encoders.images import open_image
from engine.evaluation import portable, write_results
from engine.evaluation.text_metrics import (
    concept_f1,
    corpus_bleu,
    linker_concept_sets,
    paired_bootstrap,
    rouge_l,
)
from engine.rag.case_retrieval import EmbeddingCaseRetriever, Gallery, neighbour_of
from engine.rag.consensus import CaseNeighbour, ConceptLinker
from engine.rag.report import ReportDrafter
from engine.training.config import SplitConfig
from engine.training.data import medpix_case_held_out, split_rule

logger = logging.getLogger(__name__)

SPLIT_NAME = SplitConfig().salt
COMPARISONS = (
    ("image: ours", "image: copy-nearest"),
    ("image: ours", "copy-random"),
    ("text: ours", "text: copy-nearest"),
)


def reference_text(case: CaseNeighbour | Record) -> str:
    """What a draft is compared with: findings + " " + impression (MedPix: the case diagnosis)."""
    if isinstance(case, Record):
        case = neighbour_of(case, 0.0)
    return " ".join(f"{case.findings} {case.impression}".split())


def score_method(
    hypotheses: Sequence[str], references: Sequence[str], concept_sets: Callable | None
) -> dict[str, float]:
    """ROUGE-L (mean F), corpus BLEU-4 and concept F1 of hypotheses against references."""
    out: dict[str, Any] = {
        "rouge_l": float(np.mean([rouge_l(h, r) for h, r in zip(hypotheses, references)])),
        "bleu4": corpus_bleu(hypotheses, references),
        "words": float(np.mean([len(h.split()) for h in hypotheses])),
    }
    if concept_sets is not None:
        concepts = concept_f1(hypotheses, references, concept_sets)
        out.update(
            concept_f1=concepts["concept_f1"],
            concept_f1_polarity=concepts["concept_f1_polarity"],
            concept_pairs=concepts["n"],
        )
    return out


def split_medpix(records: Sequence[Record]) -> tuple[list[Record], list[Record], dict[str, list[Record]]]:
    """(held-out cases with images, gallery cases with report text, case id -> its image records).

    Evaluated: cases with images (official dev) held out by "medsearch-val-v1". Gallery: every other case with
    text, i.e. the dev cases the encoders may train on and all official train cases (shipped without images,
    so no encoder ever saw them, whatever their hash)."""
    images: dict[str, list[Record]] = {}
    for record in records:
        if record.kind == "image+text" and record.image_path and Path(record.image_path).is_file():
            images.setdefault(str(record.extra.get("case_id")), []).append(record)
    held, gallery = [], []
    for record in records:
        if record.kind != "report":
            continue
        case_id = record.id.split(":", 1)[1]
        if case_id in images and medpix_case_held_out(case_id):
            if reference_text(record):
                held.append(record)
        elif (record.findings or record.diagnosis or "").strip():
            gallery.append(record)
    return held, gallery, images


def build_galleries(
    gallery: Sequence[Record],
    images: Mapping[str, Sequence[Record]],
    encoders: Mapping[str, Encoder],
    captions: bool = True,
) -> dict[str, Gallery]:
    """Per image space: the gallery cases' image vectors; plus "<space>:captions" (their image captions through
    the space's text tower) for spaces that embed text, which reaches the cases shipped without images."""
    galleries: dict[str, Gallery] = {}
    rows = [
        (index, r) for index, case in enumerate(gallery) for r in images.get(case.id.split(":", 1)[1], [])
    ]
    pictures = [open_image(r.image_path) for _, r in rows] if rows else []
    for space, encoder in encoders.items():
        if rows:
            vectors = np.asarray(encoder.encode_images(pictures), dtype=np.float32)
            owners = np.array([index for index, _ in rows], dtype=np.int64)
            galleries[space] = Gallery(vectors, owners, encoder.encode_images)
        if captions and "text" in encoder.modalities:
            lines = [
                (i, line.strip()) for i, c in enumerate(gallery) for line in (c.caption or "").splitlines()
            ]
            lines = [(i, line) for i, line in lines if line]
            if lines:
                vectors = np.asarray(encoder.encode_texts([line for _, line in lines]), dtype=np.float32)
                owners = np.array([i for i, _ in lines], dtype=np.int64)
                galleries[f"{space}:captions"] = Gallery(vectors, owners, encoder.encode_images)
    return galleries


def _draft_all(
    drafter: ReportDrafter, neighbour_lists: Sequence[Sequence[CaseNeighbour]], k: int
) -> dict[str, list[str]]:
    ours = [drafter.compose(list(n)[:k]).plain_text() for n in neighbour_lists]
    nearest = [reference_text(n[0]) if n else "" for n in neighbour_lists]
    return {"ours": ours, "copy-nearest": nearest}


def _text_neighbours(
    held: Sequence[Record],
    cases: Sequence[CaseNeighbour],
    gallery: Sequence[Record],
    text_encoder: Encoder,
    k: int,
) -> list[list[CaseNeighbour]]:
    """Neighbours of each held-out case's history among the gallery cases' full text (MiniLM cosine)."""
    documents = l2_normalise(text_encoder.encode_texts([r.text(include_qa=False) for r in gallery]))
    queries = l2_normalise(text_encoder.encode_texts([r.history or r.caption or "" for r in held]))
    scores = queries @ documents.T
    out = []
    for row in scores:
        order = np.argsort(-row, kind="stable")[:k]
        out.append([_scored(cases[i], float(row[i])) for i in order])
    return out


def _scored(case: CaseNeighbour, similarity: float) -> CaseNeighbour:
    return replace(case, similarity=similarity)


def run_report_benchmark(
    home: str | Path,
    data: str | Path,
    out: str | Path | None = None,
    *,
    k: int = 5,
    seed: int = 0,
    encoders: Mapping[str, Encoder] | None = None,
    text_encoder: Encoder | None = None,
    linker: ConceptLinker | None = None,
    records: Sequence[Record] | None = None,
    text_only: bool = True,
    progress: bool = True,
) -> dict[str, Any]:
    """Run the benchmark (module docstring), save JSON to `out` (if given) and return the results.

    Args:
        home: medsearch home; image encoders default to its trained `models/clip` and `models/ssl`.
        data: shared data folder (medpix-2.0/ inside; the KG is built from it unless `linker` is given).
        out: JSON file to write (paths in it are made portable).
        k: cases each draft is composed from.
        seed: copy-random's seed.
        encoders: space -> image encoder (default: the trained checkpoints present in `home`).
        text_encoder: text encoder of the text-only variant (default MiniLM; skipped if it cannot load).
        linker: text -> [(concept id, polarity)] for composition and concept F1 (default: the KG linker).
        records: MedPix records (default: loaded from `data`).
        text_only: also run the text-only (history as query) variant.
    """
    started = time.perf_counter()
    home, data = Path(home), Path(data)
    if records is None:
        from engine.datasets import load

        records = load("medpix", data / "medpix-2.0")
    encoders = dict(encoders) if encoders is not None else _trained_encoders(home)
    if linker is None:
        from engine.knowledge import Knowledge
        from engine.rag.report import linker_of

        linker = linker_of(Knowledge.load(home / "kg", data))
    held, gallery, images = split_medpix(records)
    cases = [neighbour_of(r, 0.0) for r in gallery]
    galleries = build_galleries(gallery, images, encoders)
    retriever = EmbeddingCaseRetriever(cases, galleries)
    drafter = ReportDrafter(retriever, linker=linker)
    depth = max(k, 10)
    neighbours = []
    for case in tqdm(held, desc="drafting", disable=not progress, leave=False):
        pictures = [open_image(r.image_path) for r in images[case.id.split(":", 1)[1]]]
        neighbours.append(retriever.retrieve(pictures, None, depth))
    references = [reference_text(r) for r in held]
    rng = random.Random(seed)
    hypotheses = {f"image: {name}": texts for name, texts in _draft_all(drafter, neighbours, k).items()}
    hypotheses["copy-random"] = [reference_text(cases[rng.randrange(len(cases))]) for _ in held]
    mixed = ReportDrafter(retriever, linker=linker, coherent=False)
    hypotheses["image: ours, regions mixed"] = [mixed.compose(n[:k]).plain_text() for n in neighbours]
    for other_k in (3, 10):
        hypotheses[f"image: ours k={other_k}"] = [
            drafter.compose(n[:other_k]).plain_text() for n in neighbours
        ]
    text_encoder = (text_encoder or _minilm()) if text_only else None
    if text_encoder is not None:
        text_lists = _text_neighbours(held, cases, gallery, text_encoder, depth)
        hypotheses.update({f"text: {n}": t for n, t in _draft_all(drafter, text_lists, k).items()})
    concept_sets = linker_concept_sets(linker)
    methods = {name: score_method(texts, references, concept_sets) for name, texts in hypotheses.items()}
    comparisons = {
        f"{first} vs {second}": paired_bootstrap(
            hypotheses[first], hypotheses[second], references, concept_sets, seed=seed
        )
        for first, second in COMPARISONS
        if first in hypotheses and second in hypotheses
    }
    results = {
        "task": "report drafting (MedPix held-out cases)",
        "split": SPLIT_NAME,
        "split_rule": split_rule(),
        "n_cases": len(held),
        "n_query_images": sum(len(images[r.id.split(":", 1)[1]]) for r in held),
        "gallery": {
            "cases": len(gallery),
            "cases_with_images": sum(1 for r in gallery if r.id.split(":", 1)[1] in images),
            "rows": {name: int(len(g.owners)) for name, g in galleries.items()},
        },
        "encoders": {space: _portable_name(e, home, data) for space, e in encoders.items()},
        "text_encoder": getattr(text_encoder, "name", None),
        "k": k,
        "seed": seed,
        "reference": "findings + diagnosis of the held-out case",
        "metrics": "ROUGE-L F (mean); corpus BLEU-4, smoothing method 1; concept F1 over KG-linked asserted "
        "concepts (negated excluded), mean over cases whose reference has a concept; polarity variant",
        "methods": methods,
        "comparisons": comparisons,
        "examples": [
            {"case": r.id, "reference": ref[:400], "ours": ours[:400], "nearest": near[:400]}
            for r, ref, ours, near in list(
                zip(held, references, hypotheses["image: ours"], hypotheses["image: copy-nearest"])
            )[:3]
        ],
        "seconds": round(time.perf_counter() - started, 1),
    }
    results = portable(results, {"<home>": home, "<data>": data})
    if out is not None:
        write_results(out, results)
    return results


def _portable_name(encoder: Encoder, home: Path, data: Path) -> str:
    """An encoder's registry name with its path argument made portable ("trained:<home>/models/clip")."""
    family, _, argument = str(getattr(encoder, "name", type(encoder).__name__)).partition(":")
    if not argument:
        return family
    roots = {"<home>": home, "<data>": data, "<repo>": Path(__file__).resolve().parents[2]}
    return f"{family}:{portable(argument, roots)}"


def _trained_encoders(home: Path) -> dict[str, Encoder]:
    from engine.encoders import create

    found = {}
    for space in ("clip", "ssl"):
        folder = (home / "models" / space).resolve()
        if (folder / "config.json").is_file():
            found[space] = create(f"trained:{folder}")
    if not found:
        from engine.evaluation.retrieval import PixelEncoder

        logger.warning("no trained encoders in %s/models: using raw pixels", home)
        found["pixels"] = PixelEncoder()
    return found


def _minilm() -> Encoder | None:
    try:
        from engine.encoders import create

        return create("minilm")
    except Exception as e:  # the text-only variant is optional
        logger.warning("text-only variant skipped: %s", e)
        return None


def format_report_table(results: Mapping[str, Any]) -> str:
    """A fixed-width table: one row per method."""
    lines = [f"{'method':<26} {'ROUGE-L':>8} {'BLEU-4':>8} {'conceptF1':>10} {'polarF1':>8} {'words':>6}"]
    for name, m in results["methods"].items():
        lines.append(
            f"{name:<26} {m['rouge_l']:>8.4f} {m['bleu4']:>8.4f} {m.get('concept_f1', float('nan')):>10.4f} "
            f"{m.get('concept_f1_polarity', float('nan')):>8.4f} {m['words']:>6.1f}"
        )
    for name, metrics in results.get("comparisons", {}).items():
        parts = [
            f"{metric} {v['delta']:+.4f} [{v['low']:+.4f}, {v['high']:+.4f}]" for metric, v in metrics.items()
        ]
        lines.append(f"{name}: " + "; ".join(parts))
    return "\n".join(lines)
