"""Running a `SearchQuery` against the engine: shared by `POST /search` and the web app's search tab."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

from engine.records import check_filter_fields
from engine.search import Hit, SearchRequest
from engine.workspace import Workspace
from indexers import Filter, parse_filters
from ui.api.deps import open_collection
from ui.api.models import MAX_RANK, SearchQuery

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class SearchPage:
    """Hits `offset` .. `offset + len(hits) - 1` of a query; `next_offset` is None on the last page."""

    collection: str
    hits: list[Hit]
    offset: int
    k: int
    next_offset: int | None
    took_ms: float


def build_filter(query: SearchQuery) -> Filter | None:
    """The query's filters as one `Filter` (dict form or CLI expressions); FilterError/QueryError name the problem."""
    if query.filters is None:
        return None
    spec = query.filter_dict()
    built = Filter.from_dict(spec) if spec is not None else parse_filters(list(query.filters))
    check_filter_fields(built)
    return built


def run_search(workspace: Workspace, query: SearchQuery, image: Any = None) -> SearchPage:
    """Search `query.collection` (default collection when None) for one page of hits.

    The engine is asked for `offset + k + 1` hits (at most MAX_RANK) so the page knows whether another follows.

    Raises:
        UnknownCollectionError, QueryError, FilterError: as the API maps them to 404 / 400.
    """
    started = time.perf_counter()
    collection = open_collection(workspace, query.collection)
    request = SearchRequest(
        text=query.text,
        image=image,
        k=min(query.offset + query.k + 1, MAX_RANK),
        mode=query.mode,
        space=query.space,
        filter=build_filter(query),
    )
    hits = workspace.search_service(collection.name).search(request)
    end = query.offset + query.k
    took_ms = round((time.perf_counter() - started) * 1000, 1)
    logger.info(
        "search %s mode=%s text=%s image=%s -> %d hits in %.0f ms",
        collection.name,
        query.mode,
        bool(query.text),
        image is not None,
        len(hits),
        took_ms,
    )
    return SearchPage(
        collection=collection.name,
        hits=hits[query.offset : end],
        offset=query.offset,
        k=query.k,
        next_offset=end if len(hits) > end else None,
        took_ms=took_ms,
    )
