"""SearchService: text | image | image+text queries -> dense per space + BM25 -> RRF fusion -> filtered Hits.

Every hit carries its explanation (`Why`): which rankers found it at which rank, in which space, and which
query words it contains.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from itertools import islice
from typing import Any

import numpy as np

from engine.collection import Collection
from engine.concept_search import ConceptRanking, Explanations, rank_by_concepts
from engine.encoders.base import Encoder
from engine.errors import QueryError
from engine.fusion import reciprocal_rank_fusion
from engine.knowledge import Knowledge
from indexers import Filter

logger = logging.getLogger(__name__)

MODES = ("hybrid", "dense", "keyword")
MAX_QUERY_CHARS = 2_000
_WORD = re.compile(r"[a-z0-9]+(?:[-'][a-z0-9]+)*")
_STOP = frozenset(
    "a an and are as at be by for from has have in is it of on or the to with was were this that".split()
)


@dataclass(frozen=True)
class Why:
    """Why a hit was returned: rankers ("keyword", "dense:text", ...) with its rank and raw score in each
    (BM25 score, cosine similarity), the dense spaces, matched concepts and query words."""

    spaces: tuple[str, ...] = ()
    ranks: dict[str, int] = field(default_factory=dict)
    scores: dict[str, float] = field(default_factory=dict)
    matched_terms: tuple[str, ...] = ()
    matched_concepts: tuple[dict[str, Any], ...] = ()


@dataclass(frozen=True)
class Hit:
    """One search result (fields as design.md's `--json` output)."""

    id: str
    score: float
    kind: str
    source: str
    text: str
    image_path: str | None
    modality: str | None
    body_part: str | None
    concepts: tuple[dict[str, Any], ...]
    why: Why

    def to_dict(self) -> dict[str, Any]:
        """The hit as plain JSON-ready data (tuples as lists; nested dicts copied, so callers may change them).

        Built field by field: `dataclasses.asdict` deep-copied every concept mention through `copy.deepcopy`,
        ~1.2 ms per 10-hit page, a tenth of an API search's CPU."""
        why = self.why
        return {
            "id": self.id,
            "score": self.score,
            "kind": self.kind,
            "source": self.source,
            "text": self.text,
            "image_path": self.image_path,
            "modality": self.modality,
            "body_part": self.body_part,
            "concepts": _plain(self.concepts),
            "why": {
                "spaces": list(why.spaces),
                "ranks": dict(why.ranks),
                "scores": dict(why.scores),
                "matched_terms": list(why.matched_terms),
                "matched_concepts": _plain(why.matched_concepts),
            },
        }


def _plain(value: Any) -> Any:
    """A copy of JSON-like data (dicts, lists and tuples, as lists, down to the leaves)."""
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    return value


@dataclass(frozen=True)
class SearchRequest:
    """A query: `text`, `image` (a decoded PIL image) or both; `space` picks the dense space (default: text
    queries use "text", image queries "clip")."""

    text: str | None = None
    image: Any = None
    k: int = 10
    mode: str = "hybrid"
    space: str | None = None
    filter: Filter | None = None
    use_kg: bool = True  # hybrid mode: add the concept ranker and drop records that deny a query concept


def query_terms(text: str) -> list[str]:
    """Lower-cased content words of a query (for BM25 explanations)."""
    return [w for w in _WORD.findall(text.lower()) if w not in _STOP]


class SearchService:
    """Searches one collection. `encoder_for(space)` returns the encoder a space was built with (cached);
    `knowledge_for()` the knowledge graph (or None), used by hybrid text queries when records carry concepts."""

    def __init__(
        self,
        collection: Collection,
        encoder_for: Callable[[str], Encoder],
        knowledge_for: Callable[[], Knowledge | None] | None = None,
    ) -> None:
        self.collection = collection
        self._encoder_for = encoder_for
        self._knowledge_for = knowledge_for
        self._payloads: tuple[int, dict[str, dict[str, Any]]] = (-1, {})  # (change seq, payloads): one swap

    def search(self, request: SearchRequest) -> list[Hit]:
        return self.search_many([request])[0]

    def search_many(self, requests: Sequence[SearchRequest]) -> list[list[Hit]]:
        """Run many queries, encoding the texts and images of each space in one batch."""
        for request in requests:
            _validate(request)
        dense = self._dense_rankings(requests)
        results = []
        for i, request in enumerate(requests):
            rankings: dict[str, list[tuple[str, float]]] = {}
            if request.mode in ("hybrid", "keyword") and request.text:
                rankings["keyword"] = self._keyword_ranking(request)
            if request.mode in ("hybrid", "dense") or not request.text:
                rankings.update(dense[i])
            concepts = self._concept_ranking(request, rankings)
            if concepts is not None and concepts.constraints:
                rankings["concepts"] = concepts.ranked
            results.append(self._hits(request, rankings, concepts))
        return results

    def _concept_ranking(
        self, request: SearchRequest, rankings: dict[str, list[tuple[str, float]]]
    ) -> ConceptRanking | None:
        if request.mode != "hybrid" or not request.text or not request.use_kg or self._knowledge_for is None:
            return None
        if not self.collection.has_concepts():
            return None
        knowledge = self._knowledge_for()
        if knowledge is None:
            return None
        base_ranks: dict[str, int] = {}
        for ranked in rankings.values():
            for rank, (doc_id, _) in enumerate(ranked, start=1):
                base_ranks[doc_id] = min(rank, base_ranks.get(doc_id, rank))
        return rank_by_concepts(
            self.collection,
            knowledge,
            request.text,
            self._allowed(request.filter),
            base_ranks,
            keep=request.k,  # the fused top k is unchanged (see rank_by_concepts)
        )

    # ------------------------------------------------------------------ rankers
    def _depth(self, request: SearchRequest) -> int:
        return request.k if request.mode != "hybrid" else max(50, 3 * request.k)

    def _space_of(self, request: SearchRequest) -> list[tuple[str, str]]:
        """(space, what to encode: "text" or "image") pairs for a request's dense rankers."""
        spaces = self.collection.spaces
        if request.space:
            if request.space not in spaces:
                raise QueryError(
                    f"space {request.space!r} is not in collection {self.collection.name!r} "
                    f"(it has {sorted(spaces)})"
                )
            chosen = [request.space]
        elif request.image is not None:
            chosen = [s for s in ("clip", "ssl") if s in spaces][:1]
            if not chosen:
                raise QueryError(
                    f"collection {self.collection.name!r} has no image space (clip or ssl): "
                    "train the image encoders and re-ingest (medsearch train clip)"
                )
        else:
            chosen = [s for s in ("text",) if s in spaces]
        pairs = []
        for space in chosen:
            modalities = self._encoder_for(space).modalities
            if request.image is not None and "image" in modalities:
                pairs.append((space, "image"))
            if request.text and "text" in modalities:
                pairs.append((space, "text"))
        if request.mode == "dense" and not pairs:
            raise QueryError(f"no dense space of collection {self.collection.name!r} can encode this query")
        return pairs

    def _dense_rankings(self, requests: Sequence[SearchRequest]) -> list[dict[str, list[tuple[str, float]]]]:
        out: list[dict[str, list[tuple[str, float]]]] = [{} for _ in requests]
        jobs: dict[tuple[str, str], list[int]] = {}
        for i, request in enumerate(requests):
            if request.mode == "keyword" and request.text:
                continue
            for pair in self._space_of(request):
                jobs.setdefault(pair, []).append(i)
        for (space, what), positions in jobs.items():
            encoder = self._encoder_for(space)
            if what == "text":
                vectors = encoder.encode_texts([requests[i].text or "" for i in positions])
            else:
                vectors = encoder.encode_images([requests[i].image for i in positions])
            for row, i in enumerate(positions):
                request = requests[i]
                ids, scores = self.collection.index(space).search(
                    np.ascontiguousarray(vectors[row : row + 1]), self._depth(request), filter=request.filter
                )
                name = f"dense:{space}" + (":image" if what == "image" else "")
                out[i][name] = [(x, float(s)) for x, s in zip(ids[0], scores[0]) if x]
        return out

    def _keyword_ranking(self, request: SearchRequest) -> list[tuple[str, float]]:
        allowed = self._allowed(request.filter)
        ids, scores = self.collection.keyword_index().search(
            [request.text or ""], self._depth(request), allowed=allowed
        )
        return [(x, float(s)) for x, s in zip(ids[0], scores[0]) if x]

    def _allowed(self, filter: Filter | None) -> set[str] | None:
        if filter is None:
            return None
        last = self.collection.last_change()
        at, payloads = self._payloads  # read once: concurrent searches may swap in a newer pair
        if at != last:
            payloads = self.collection.payloads()
            self._payloads = (last, payloads)
        return {rid for rid, payload in payloads.items() if filter.matches(payload)}

    # ------------------------------------------------------------------ hits
    def _hits(
        self,
        request: SearchRequest,
        rankings: dict[str, list[tuple[str, float]]],
        concepts: ConceptRanking | None = None,
    ) -> list[Hit]:
        """Fuse the rankings (RRF score; a lone ranker keeps its raw score) into explained Hits; records that
        deny a query concept are dropped."""
        raw = {name: dict(ranked) for name, ranked in rankings.items()}
        fused = reciprocal_rank_fusion(
            {name: [x for x, _ in ranked] for name, ranked in rankings.items()},
            ranks={"concepts": concepts.ranks} if concepts is not None and "concepts" in rankings else None,
        )
        denied = concepts.denied if concepts else set()
        fused = list(islice((item for item in fused if item[0] not in denied), request.k))
        records = self.collection.get_many([doc_id for doc_id, _, _ in fused])
        mentions = self.collection.concepts_of(list(records))
        if concepts is not None and isinstance(concepts.why, Explanations):
            concepts.why.preload(mentions)  # explaining the hits reads these rows: one read, not one per hit
        terms = query_terms(request.text) if request.text else []
        hits = []
        for doc_id, score, ranks in fused:
            record = records.get(doc_id)
            if record is None:  # deleted between index and read
                continue
            text = record.text()
            words = set(_WORD.findall(text.lower()))
            spaces = tuple(sorted({name.split(":")[1] for name in ranks if name.startswith("dense:")}))
            scores = {name: round(raw[name][doc_id], 6) for name in ranks}
            if len(rankings) == 1:
                score = next(iter(scores.values()))
            hits.append(
                Hit(
                    id=doc_id,
                    score=round(float(score), 6),
                    kind=record.kind,
                    source=record.source,
                    text=text,
                    image_path=record.image_path,
                    modality=record.modality,
                    body_part=record.body_part,
                    concepts=tuple(_concept_chips(mentions.get(doc_id, ()))),
                    why=Why(
                        spaces=spaces,
                        ranks=dict(ranks),
                        scores=scores,
                        matched_terms=tuple(t for t in terms if t in words),
                        matched_concepts=tuple(concepts.why.get(doc_id, ())) if concepts else (),
                    ),
                )
            )
        return hits


def _concept_chips(mentions: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """A record's concepts as design.md's {id, name, negated} (+ uncertain, field), one per concept and polarity."""
    chips: dict[tuple[str, str], dict[str, Any]] = {}
    for mention in mentions:
        key = (mention["concept_id"], mention["polarity"])
        chips.setdefault(
            key,
            {
                "id": mention["concept_id"],
                "name": mention.get("name"),
                "negated": mention["polarity"] == "negated",
                "uncertain": mention["polarity"] == "uncertain",
                "field": mention.get("field"),
            },
        )
    return list(chips.values())


def _validate(request: SearchRequest) -> None:
    if request.mode not in MODES:
        raise QueryError(f"unknown search mode {request.mode!r}; choose one of {list(MODES)}")
    if not (request.text and request.text.strip()) and request.image is None:
        raise QueryError("empty query: give text, an image, or both")
    if request.text and len(request.text) > MAX_QUERY_CHARS:
        raise QueryError(f"query text has {len(request.text)} characters; the limit is {MAX_QUERY_CHARS}")
    if not 1 <= request.k <= 1000:
        raise QueryError(f"k={request.k}: choose 1 <= k <= 1000")
    if request.mode == "keyword" and not request.text:
        raise QueryError("keyword mode needs query text")
