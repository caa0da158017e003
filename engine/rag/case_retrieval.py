"""Case retrieval for report drafting: a query image (or indication) -> the most similar prior cases.

A case is what a report is written about: a MedPix case (its images share the case's findings and diagnosis)
or an IU X-ray study. Image queries are searched in every image space (clip, ssl) and each space's ranking of
*cases* (a case scores its best image) is fused by reciprocal rank fusion; a case's `similarity` is the mean
over spaces of its best cosine. With an indication too, its hybrid ranking is fused into the order, but the
similarity stays the image cosine (a case only the text found keeps its hybrid score). A text-only query (the
indication) goes through hybrid search (BM25 + dense text + concepts) and `similarity` is then the hybrid (RRF)
score. Two retrievers share that rule: `SearchCaseRetriever` over a collection (CLI, API, web) and
`EmbeddingCaseRetriever` over precomputed vectors (the benchmark).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from engine.errors import QueryError
from engine.fusion import reciprocal_rank_fusion
from engine.rag.consensus import CaseNeighbour

if TYPE_CHECKING:
    from PIL.Image import Image

    from engine.datasets.record import Record
    from engine.search import SearchService

logger = logging.getLogger(__name__)

IMAGE_SPACES = ("clip", "ssl")


class CaseRetriever(Protocol):
    """images and/or an indication -> up to k cases, best first."""

    def retrieve(self, images: Sequence[Image], indication: str | None, k: int) -> list[CaseNeighbour]: ...


def case_id_of(record: Record) -> str:
    """The case a record belongs to: "medpix:MPX1009" for a MedPix image or case, else the record id."""
    case = (record.extra or {}).get("case_id")
    return f"{record.source}:{case}" if case else record.id


def neighbour_of(record: Record, similarity: float) -> CaseNeighbour:
    """A record's case as a neighbour: findings, and impression (else diagnosis) as the impression."""
    return CaseNeighbour(
        record_id=record.id,
        case_id=case_id_of(record),
        similarity=float(similarity),
        findings=(record.findings or "").strip(),
        impression=(record.impression or record.diagnosis or "").strip(),
        source=record.source,
        region=record.body_part,
    )


def has_report(record: Record) -> bool:
    """Whether a record carries report text to draft from (findings, impression or diagnosis)."""
    return bool((record.findings or "").strip() or (record.impression or record.diagnosis or "").strip())


def fuse_case_rankings(
    rankings: Mapping[str, Sequence[tuple[str, float]]],
    similarity_from: Collection[str] | None = None,
) -> list[tuple[str, float, float]]:
    """Fuse per-ranker case rankings [(case id, score)] by RRF -> [(case id, rrf score, similarity)].

    A case's similarity is the mean of its scores in the rankers named by `similarity_from` (all when None:
    scores on one scale, such as cosines), else, when none of those ranked it, the mean of its other scores.
    """
    chosen: dict[str, list[float]] = {}
    others: dict[str, list[float]] = {}
    for name, ranked in rankings.items():
        into = chosen if similarity_from is None or name in similarity_from else others
        for case, score in ranked:
            into.setdefault(case, []).append(float(score))
    fused = reciprocal_rank_fusion({name: [case for case, _ in ranked] for name, ranked in rankings.items()})
    return [(case, score, float(np.mean(chosen.get(case) or others[case]))) for case, score, _ in fused]


class SearchCaseRetriever:
    """Cases from a collection through its `SearchService` (image spaces fused; text by hybrid search).

    Args:
        service: the collection's search service.
        depth: hits read per space before grouping by case.
    """

    def __init__(self, service: SearchService, depth: int = 100) -> None:
        self.service = service
        self.depth = depth

    def retrieve(self, images: Sequence[Image], indication: str | None, k: int) -> list[CaseNeighbour]:
        from engine.search import SearchRequest

        collection = self.service.collection
        best_record: dict[str, str] = {}
        spaces = [space for space in IMAGE_SPACES if space in collection.spaces] if images else []
        if images and not spaces and not indication:
            raise QueryError(
                f"collection {collection.name!r} has no image space (clip or ssl) to search by image: train the "
                "image encoders and re-ingest (medsearch train clip), or give an indication"
            )
        requests = [
            SearchRequest(image=image, k=self.depth, mode="dense", space=space)
            for space in spaces
            for image in images
        ]
        if indication and indication.strip():
            requests.append(SearchRequest(text=indication.strip(), k=self.depth, mode="hybrid"))
        if not requests:
            return []
        results = self.service.search_many(requests)
        hit_ids = list(dict.fromkeys(hit.id for result in results for hit in result))
        records = {rid: r for rid, r in collection.get_many(hit_ids).items() if has_report(r)}
        per_ranker: dict[str, dict[str, float]] = {}
        for request, result in zip(requests, results):
            best = per_ranker.setdefault(
                f"image:{request.space}" if request.image is not None else "text", {}
            )
            for hit in result:
                if hit.id not in records:
                    continue
                case = case_id_of(records[hit.id])
                best[case] = max(best.get(case, -np.inf), hit.score)
                best_record.setdefault(case, hit.id)
        rankings = {
            name: sorted(best.items(), key=lambda item: -item[1]) for name, best in per_ranker.items()
        }
        images_ranked = [name for name in rankings if name.startswith("image:")]  # cosines; "text" is RRF
        fused = fuse_case_rankings(rankings, similarity_from=images_ranked or None)[:k]
        logger.info(
            "report retrieval: %d rankers, %d cases, kept %d", len(rankings), len(best_record), len(fused)
        )
        return [neighbour_of(records[best_record[case]], similarity) for case, _, similarity in fused]


@dataclass(frozen=True)
class Gallery:
    """One image space of an `EmbeddingCaseRetriever`: vectors float32 (n, dim) L2-normalised, the case index of
    each row (int (n,)), and the function embedding query images the same way (list of PIL -> (m, dim))."""

    vectors: np.ndarray
    owners: np.ndarray
    encode: Callable[[Sequence[Any]], np.ndarray]


class EmbeddingCaseRetriever:
    """Cases from precomputed vectors (the benchmark): each gallery ranks cases by their best row's cosine
    with the mean of the query images' vectors; galleries are fused as in `fuse_case_rankings`.

    Args:
        cases: one neighbour template per case (similarity ignored), indexed by `Gallery.owners`.
        galleries: name -> gallery (e.g. "clip", "ssl", "clip:captions" for text rows of the clip space).
    """

    def __init__(self, cases: Sequence[CaseNeighbour], galleries: Mapping[str, Gallery]) -> None:
        self.cases = list(cases)
        self.galleries = dict(galleries)

    def rank(self, query: Mapping[str, np.ndarray], k: int) -> list[CaseNeighbour]:
        """Rank with query vectors already embedded: gallery name -> float32 (dim,) unit vector."""
        rankings = {}
        for name, vector in query.items():
            gallery = self.galleries[name]
            scores = gallery.vectors @ vector
            best = np.full(len(self.cases), -np.inf, dtype=np.float64)
            np.maximum.at(best, gallery.owners, scores)
            order = [int(i) for i in np.argsort(-best, kind="stable") if np.isfinite(best[i])]
            rankings[name] = [(str(i), float(best[i])) for i in order]
        fused = fuse_case_rankings(rankings)[:k]
        return [_with_similarity(self.cases[int(case)], similarity) for case, _, similarity in fused]

    def embed(self, images: Sequence[Any]) -> dict[str, np.ndarray]:
        """gallery name -> the normalised mean of the images' vectors in that gallery's space."""
        out = {}
        for name, gallery in self.galleries.items():
            mean = np.asarray(gallery.encode(list(images)), dtype=np.float32).mean(axis=0)
            out[name] = mean / max(float(np.linalg.norm(mean)), 1e-12)
        return out

    def retrieve(self, images: Sequence[Any], indication: str | None, k: int) -> list[CaseNeighbour]:
        return self.rank(self.embed(images), k) if images else []


def _with_similarity(case: CaseNeighbour, similarity: float) -> CaseNeighbour:
    return replace(case, similarity=float(similarity))
