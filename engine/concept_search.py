"""The knowledge-graph ranker: records ranked by the query concepts they affirm; records that deny them flagged.

Fused with BM25 and dense by RRF in `engine.search`; denied records are then dropped from hybrid results, so a
search for a finding does not return the reports that rule it out.

Scoring runs on `ConceptPostings`, an in-memory posting index (concept id -> row numbers of the records whose
evidence fields affirm or negate it) built once per collection and caught up from the change log, so a query
concept mentioned by tens of thousands of records costs a few numpy passes, not a SQLite read per record.
Only the hits that are shown read their mentions back from SQLite, to explain themselves.
"""

from __future__ import annotations

import logging
import threading
import time
import weakref
from collections.abc import Iterator, Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from engine.collection import Collection
from engine.knowledge import EVIDENCE_FIELDS, ConceptConstraint, Knowledge

logger = logging.getLogger(__name__)

_AFFIRMED = ("present", "uncertain")
_EMPTY = np.zeros(0, dtype=np.int32)
_PACKED_KEY_LIMIT = 2**62  # beyond it the ranking key of `_order` would overflow int64: sort by columns
_Judged = tuple[ConceptConstraint, frozenset[str], frozenset[str]]  # (constraint, narrower ids, all ids)


@dataclass(frozen=True)
class ConceptPostings:
    """Immutable snapshot of a collection's evidence-field concept mentions (replaced, never mutated).

    ids: row -> record id; row_of: record id -> its current row (a changed record gets a new row, its old one
    is dead); alive: bool (rows,); id_order: int64 (rows,), position of the row's id in sorted id order (ties of
    the ranking break by id); affirmed / negated: concept id -> int32 rows of each mention (one per mention,
    so a record that mentions a concept twice appears twice); version: `RecordStore.concepts_version()`.
    """

    ids: list[str]
    row_of: dict[str, int]
    alive: np.ndarray
    id_order: np.ndarray
    affirmed: dict[str, np.ndarray]
    negated: dict[str, np.ndarray]
    version: tuple[int, int]

    @classmethod
    def build(
        cls,
        rows: Sequence[tuple[str, str, str]],
        version: tuple[int, int],
        base: ConceptPostings | None = None,
        replaced: Sequence[str] = (),
    ) -> ConceptPostings:
        """From (record id, concept id, polarity) rows; with `base`, the records `replaced` lose their old rows
        and `rows` (their current mentions) are appended."""
        ids = list(base.ids) if base else []
        row_of = dict(base.row_of) if base else {}
        for record_id in replaced:
            row_of.pop(record_id, None)
        fresh_from = len(ids)
        for record_id, _, _ in rows:
            if row_of.get(record_id, -1) < fresh_from:
                row_of[record_id] = len(ids)
                ids.append(record_id)
        alive = np.zeros(len(ids), dtype=bool)
        alive[list(row_of.values())] = True
        id_order = np.empty(len(ids), dtype=np.int64)
        id_order[np.argsort(np.array(ids, dtype=object), kind="stable")] = np.arange(len(ids))
        affirmed = _group(rows, row_of, _AFFIRMED, dict(base.affirmed) if base else {})
        negated = _group(rows, row_of, ("negated",), dict(base.negated) if base else {})
        return cls(ids, row_of, alive, id_order, affirmed, negated, version)

    @property
    def dead(self) -> int:
        return len(self.ids) - len(self.row_of)

    def rows(self, postings: Mapping[str, np.ndarray], concept_ids: frozenset[str]) -> np.ndarray:
        """int32 rows of every mention of `concept_ids` in `postings` (repeated per mention)."""
        found = [postings[c] for c in concept_ids if c in postings]
        return np.concatenate(found) if found else _EMPTY


def _group(
    rows: Sequence[tuple[str, str, str]],
    row_of: Mapping[str, int],
    polarities: tuple[str, ...],
    into: dict[str, np.ndarray],
) -> dict[str, np.ndarray]:
    """Add the rows of the mentions with `polarities` to `into` (concept id -> int32 rows), appended per concept."""
    new: dict[str, list[int]] = {}
    for record_id, concept_id, polarity in rows:
        if polarity in polarities:
            new.setdefault(concept_id, []).append(row_of[record_id])
    for concept_id, found in new.items():
        added = np.asarray(found, dtype=np.int32)
        old = into.get(concept_id)
        into[concept_id] = added if old is None else np.concatenate([old, added])
    return into


_POSTINGS: weakref.WeakKeyDictionary[Collection, ConceptPostings] = weakref.WeakKeyDictionary()
_POSTINGS_LOCK = threading.Lock()


def concept_postings(collection: Collection) -> ConceptPostings:
    """The collection's posting index, built on first use and caught up with every change since: the records
    touched by the change log get new rows; when more than a quarter of the rows are dead, or concepts were
    relinked without a change-log entry, it is rebuilt from scratch."""
    version = collection.concepts_version()
    postings = _POSTINGS.get(collection)
    if postings is not None and postings.version == version:
        return postings
    with _POSTINGS_LOCK:
        postings = _POSTINGS.get(collection)
        version = collection.concepts_version()
        if postings is not None and postings.version == version:
            return postings
        started = time.perf_counter()
        if postings is not None and postings.version[0] < version[0]:
            changed = collection.changed_since(postings.version[0])
            rows = collection.evidence_mentions(EVIDENCE_FIELDS, changed)
            postings = ConceptPostings.build(rows, version, base=postings, replaced=changed)
            how = f"caught up {len(changed)} changed records"
        if postings is None or postings.version != version or postings.dead > len(postings.row_of) // 4:
            rows = collection.evidence_mentions(EVIDENCE_FIELDS)
            postings = ConceptPostings.build(rows, version)
            how = f"built from {len(rows)} mentions"
        _POSTINGS[collection] = postings
        logger.info(
            "concept postings of %s: %s (%d records) in %.2fs",
            collection.name,
            how,
            len(postings.row_of),
            time.perf_counter() - started,
        )
        return postings


class RecordRows(AbstractSet[str]):
    """Set of record ids held as a boolean mask over `ConceptPostings` rows (membership without a Python set)."""

    def __init__(self, postings: ConceptPostings | None = None, mask: np.ndarray | None = None) -> None:
        self._postings = postings
        self._mask = mask

    def __contains__(self, record_id: object) -> bool:
        if self._postings is None or self._mask is None:
            return False
        row = self._postings.row_of.get(record_id)  # type: ignore[call-overload]
        return row is not None and bool(self._mask[row])

    def __iter__(self) -> Iterator[str]:
        if self._postings is None or self._mask is None:
            return iter(())
        ids = self._postings.ids
        return (ids[row] for row in np.flatnonzero(self._mask))

    def __len__(self) -> int:
        return 0 if self._mask is None else int(np.count_nonzero(self._mask))


class Explanations(Mapping[str, list[dict[str, Any]]]):
    """record id -> matched-concept explanations of the ranked records, built on first access from the record's
    mentions (a query concept may match tens of thousands of records, of which only the page of hits is ever
    explained)."""

    def __init__(
        self,
        knowledge: Knowledge | None = None,
        collection: Collection | None = None,
        judged: Sequence[_Judged] = (),
        ranked: AbstractSet[str] = frozenset(),
    ) -> None:
        self._knowledge = knowledge
        self._collection = collection
        self._judged = judged
        self._ranked = ranked
        self._built: dict[str, list[dict[str, Any]]] = {}
        self._mentions: dict[str, Sequence[Mapping[str, Any]]] = {}

    def preload(self, mentions: Mapping[str, Sequence[Mapping[str, Any]]]) -> None:
        """Take records' mentions already read (`Collection.concepts_of`), so explaining them reads SQLite no more."""
        self._mentions.update(mentions)

    def __getitem__(self, record_id: str) -> list[dict[str, Any]]:
        built = self._built.get(record_id)
        if built is None:
            if record_id not in self._ranked or self._collection is None:
                raise KeyError(record_id)
            mentions = self._mentions.get(record_id)
            if mentions is None:
                mentions = self._collection.concepts_of([record_id])[record_id]
            said = [m for m in mentions if m.get("field") in EVIDENCE_FIELDS]
            built = []
            for constraint, narrower, all_ids in self._judged:
                matches, _ = _evidence(constraint, said, narrower, all_ids)
                if matches:
                    built.append(_explain(self._knowledge, constraint, dict(matches[0])))
            self._built[record_id] = built
        return built

    def __iter__(self) -> Iterator[str]:
        return iter(self._ranked)

    def __len__(self) -> int:
        return len(self._ranked)


@dataclass
class ConceptRanking:
    """ranked: (record id, number of query concepts matched) best first; denied: record ids that rule a query
    concept out; why: record id -> matched-concept explanations (built lazily); ranks: the rank (from 1) of each
    `ranked` record in the whole ranking, which can skip ranks (`rank_by_concepts`'s `keep`; empty: 1, 2, ...)."""

    constraints: list[ConceptConstraint]
    ranked: list[tuple[str, float]] = field(default_factory=list)
    denied: AbstractSet[str] = field(default_factory=RecordRows)
    why: Mapping[str, list[dict[str, Any]]] = field(default_factory=Explanations)
    ranks: list[int] = field(default_factory=list)


def rank_by_concepts(
    collection: Collection,
    knowledge: Knowledge,
    text: str,
    allowed: set[str] | None,
    base_ranks: Mapping[str, int],
    keep: int | None = None,
) -> ConceptRanking:
    """Rank the records that affirm the query's concepts: by concepts matched, then best rank in the other
    rankers, then number of matching mentions, then id.

    Args:
        collection: where the records' concept mentions are stored.
        knowledge: graph + linker (turns the query text into constraints).
        text: the query text.
        allowed: record ids the filter allows (None: all).
        base_ranks: best rank of each record in the other rankers, to order records that match equally.
        keep: cut `ranked` after the `keep`-th record that is not in `base_ranks` and after the last one that is,
            and leave out the records between that are not in `base_ranks` (`ranks` keeps every record's rank in
            the whole ranking); None: rank every matching record. With `keep` >= the number of hits k, the RRF top
            k is unchanged: a record only this ranker found scores 1 / (60 + rank), below the `keep` such records
            ahead of it, so a query concept that tens of thousands of records affirm costs the fusion nothing.
    """
    constraints = knowledge.constraints(text)
    if not constraints:
        return ConceptRanking(constraints, why=Explanations(knowledge))
    judged = [(c, frozenset(c.narrower), frozenset(c.all_ids)) for c in constraints]
    postings = concept_postings(collection)
    matched, strength, denied = _score(postings, judged)
    eligible = postings.alive.copy()
    if allowed is not None:
        eligible &= _mask_of(postings, allowed)
    denied &= eligible
    order, listed = _order(
        postings, np.flatnonzero((matched > 0) & ~denied & eligible), matched, strength, base_ranks, keep
    )
    ranks = np.arange(1, len(order) + 1)
    if keep is not None:  # past the keep-th record only this ranker found, only listed ones can reach the top
        kept = listed | (np.cumsum(~listed) <= keep)
        order, ranks = order[kept], ranks[kept]
    ids = postings.ids
    ranked = list(zip(map(ids.__getitem__, order.tolist()), matched[order].astype(float).tolist()))
    in_ranking = np.zeros(len(ids), dtype=bool)
    in_ranking[order] = True
    why = Explanations(knowledge, collection, judged, RecordRows(postings, in_ranking))
    return ConceptRanking(constraints, ranked, RecordRows(postings, denied), why, ranks.tolist())


def _score(postings: ConceptPostings, judged: Sequence[_Judged]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per row: (query concepts matched, matching mentions, denies a query concept), each (rows,), as
    `_evidence` decides them record by record."""
    size = len(postings.ids)
    matched = np.zeros(size, dtype=np.int64)
    strength = np.zeros(size, dtype=np.int64)
    denied = np.zeros(size, dtype=bool)
    for constraint, narrower, all_ids in judged:
        positive = np.bincount(postings.rows(postings.affirmed, narrower), minlength=size)
        negative = np.bincount(postings.rows(postings.negated, all_ids), minlength=size)
        if constraint.polarity == "negated":
            matches = np.where(positive > 0, 0, negative)
            denied |= positive > 0
        else:
            matches = positive
            denied |= (negative > 0) & (positive == 0)
        matched += matches > 0
        strength += matches
    return matched, strength, denied


def _mask_of(postings: ConceptPostings, record_ids: set[str]) -> np.ndarray:
    mask = np.zeros(len(postings.ids), dtype=bool)
    rows = [row for row in map(postings.row_of.get, record_ids) if row is not None]
    mask[rows] = True
    return mask


def _order(
    postings: ConceptPostings,
    candidates: np.ndarray,
    matched: np.ndarray,
    strength: np.ndarray,
    base_ranks: Mapping[str, int],
    keep: int | None,
) -> tuple[np.ndarray, np.ndarray]:
    """Rows of `candidates` in ranking order (-matched, base rank, -strength, id), cut as `rank_by_concepts`'s
    `keep` says: one int64 key per row, partitioned, then only the kept rows sorted. Returns (rows, whether each
    is in `base_ranks`)."""
    unranked = len(base_ranks) + 1
    base = np.full(len(postings.ids), unranked, dtype=np.int64)
    listed = np.zeros(len(postings.ids), dtype=bool)  # in base_ranks
    for record_id, rank in base_ranks.items():
        row = postings.row_of.get(record_id)
        if row is not None:
            base[row], listed[row] = rank, True
    base, listed = base[candidates], listed[candidates]
    most_matched, most_strength = int(matched.max(initial=0)), int(strength.max(initial=0))
    span = int(base.max(initial=unranked)) + 1
    if (most_matched + 1) * span * (most_strength + 1) * len(postings.ids) >= _PACKED_KEY_LIMIT:
        columns = (postings.id_order[candidates], -strength[candidates], base, -matched[candidates])
        by_columns = np.lexsort(columns)
        return _cut(candidates[by_columns], listed[by_columns], keep)
    key = (most_matched - matched[candidates]) * span + base
    key = (key * (most_strength + 1) + (most_strength - strength[candidates])) * len(postings.ids)
    key += postings.id_order[candidates]
    if keep is not None and np.count_nonzero(~listed) > keep:
        only = key[~listed]
        limit = int(np.partition(only, keep - 1)[keep - 1]) if keep > 0 else -1
        chosen = np.flatnonzero(key <= max(limit, int(key[listed].max(initial=-1))))
        candidates, key, listed = candidates[chosen], key[chosen], listed[chosen]
    by_key = np.argsort(key, kind="stable")
    return candidates[by_key], listed[by_key]


def _cut(order: np.ndarray, listed: np.ndarray, keep: int | None) -> tuple[np.ndarray, np.ndarray]:
    """`order` (and `listed`) up to its `keep`-th row not in the base rankings and its last row that is."""
    if keep is None or np.count_nonzero(~listed) <= keep:
        return order, listed
    end = int(np.flatnonzero(~listed)[keep - 1]) + 1 if keep > 0 else 0
    last_base = np.flatnonzero(listed)
    end = max(end, int(last_base[-1]) + 1 if len(last_base) else 0)
    return order[:end], listed[:end]


def _evidence(
    constraint: ConceptConstraint,
    said: Sequence[Mapping[str, Any]],
    narrower: frozenset[str],
    all_ids: frozenset[str],
) -> tuple[list[Mapping[str, Any]], bool]:
    """(matching mentions, whether the record denies the constraint): `Knowledge.evidence` without copies."""
    positive = [m for m in said if m["polarity"] in _AFFIRMED and m["concept_id"] in narrower]
    negative = [m for m in said if m["polarity"] == "negated" and m["concept_id"] in all_ids]
    if constraint.polarity == "negated":  # "no effusion" asks for the records that deny it
        return ([] if positive else negative), bool(positive)
    return positive, bool(negative) and not positive


def _explain(
    knowledge: Knowledge, constraint: ConceptConstraint, mention: Mapping[str, Any]
) -> dict[str, Any]:
    """One matched concept: the query words, the concept they mean, what the record says and the graph path."""
    path = constraint.narrower.get(mention["concept_id"], ())
    return {
        "query": constraint.text,
        "query_concept": {"id": constraint.concept_id, "name": constraint.name},
        "concept": {"id": mention["concept_id"], "name": mention.get("name")},
        "polarity": mention["polarity"],
        "field": mention.get("field"),
        "sentence": mention.get("sentence"),
        "path": [
            {"from": knowledge.graph.concept(a).name, "relation": rel, "to": knowledge.graph.concept(b).name}
            for a, rel, b in path
        ],
    }
