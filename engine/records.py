"""Read helpers over a collection's records for the API and the web app: pages, facet counts, filter checks.

They use only `Collection`'s public reads (`payloads`, `get_many`), so they work on every backend. A page or a
facet count reads the payload of every record (one SQLite scan, milliseconds for tens of thousands of records).
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from engine.collection import Collection
from engine.datasets.record import Record
from engine.errors import QueryError
from engine.store import PAYLOAD_FIELDS
from indexers import Filter

logger = logging.getLogger(__name__)

FILTER_FIELDS: tuple[str, ...] = (*PAYLOAD_FIELDS, "labels")
FACET_FIELDS: tuple[str, ...] = ("source", "kind", "modality", "body_part", "plane", "split")


@dataclass(frozen=True)
class RecordPage:
    """One page of records in id order: `records[i]` is record number `offset + i` of `total` matching ones."""

    records: tuple[Record, ...]
    total: int
    offset: int
    limit: int


def check_filter_fields(filter: Filter | None) -> None:
    """Raise QueryError when `filter` reads a field that no record payload holds (it could never match)."""
    if filter is None:
        return
    unknown = [name for name in filter.fields() if name not in FILTER_FIELDS]
    if unknown:
        raise QueryError(f"unknown filter field(s) {unknown}; filterable fields are {list(FILTER_FIELDS)}")


def page_records(
    collection: Collection, *, offset: int = 0, limit: int = 20, filter: Filter | None = None
) -> RecordPage:
    """Records `offset` .. `offset + limit - 1` (in id order) of those whose payload matches `filter`.

    Raises:
        QueryError: a negative offset, a limit outside 1..1000, or a filter on an unknown field.
    """
    if offset < 0 or not 1 <= limit <= 1000:
        raise QueryError(f"offset={offset}, limit={limit}: choose offset >= 0 and 1 <= limit <= 1000")
    check_filter_fields(filter)
    payloads = collection.payloads()
    ids = sorted(rid for rid, payload in payloads.items() if filter is None or filter.matches(payload))
    chosen = ids[offset : offset + limit]
    found = collection.get_many(chosen)
    return RecordPage(
        records=tuple(found[rid] for rid in chosen if rid in found),
        total=len(ids),
        offset=offset,
        limit=limit,
    )


def facet_counts(collection: Collection, fields: Sequence[str] = FACET_FIELDS) -> dict[str, dict[str, int]]:
    """field -> {value: number of records}, most frequent value first (records without the field are left out)."""
    counters: dict[str, Counter[Any]] = {name: Counter() for name in fields}
    for payload in collection.payloads().values():
        for name in fields:
            value = payload.get(name)
            if isinstance(value, list):
                counters[name].update(str(v) for v in value)
            elif value is not None:
                counters[name][str(value)] += 1
    return {name: dict(counter.most_common()) for name, counter in counters.items()}
