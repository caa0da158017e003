"""Build the concept graph from its sources, and cache it.

``build_graph`` loads each configured source (Disease Ontology OBO, RadLex CSV, SLAKE KG folder,
UMLS RRF folder, and the curated files shipped in ``kg/data``), merges them (``kg.merge``) and wraps
the result in a ``ConceptGraph``. ``load_or_build`` keeps the built graph as one pickle in a cache
folder (engine passes ``MEDSEARCH_HOME/kg``), keyed by a hash of the source files' paths, sizes and
modification times plus the format version, so a changed source rebuilds and an unchanged one loads.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from kg.concepts import SourceData
from kg.curated import DATA_DIR, load_curated
from kg.errors import KGError
from kg.graph import ConceptGraph
from kg.merge import merge_sources
from kg.obo import load_obo
from kg.persist import FORMAT_VERSION
from kg.radlex import load_radlex
from kg.slake_kg import FILES as SLAKE_FILES
from kg.slake_kg import load_slake_kg
from kg.umls_rrf import load_umls

logger = logging.getLogger(__name__)

UMLS_FILES = ("MRCONSO.RRF", "MRREL.RRF", "MRSTY.RRF")
# Part of the cache key: bump it whenever a loader or a merge rule changes what a build produces.
BUILD_RULES_VERSION = 1


class SourceNotFoundError(KGError, FileNotFoundError):
    """A configured source file or folder does not exist."""


@dataclass(frozen=True)
class GraphSources:
    """Where the graph's sources are; each is optional.

    Attributes:
        doid: Disease Ontology ``doid.obo``.
        radlex: RadLex ``Radlex.csv`` (``label,RID,parent RID``).
        slake_kg_dir: Folder with SLAKE's ``en_disease.csv``, ``en_organ.csv``, ``en_organ_rel.csv``.
        umls_dir: UMLS ``META`` folder with ``MRCONSO.RRF``, ``MRREL.RRF``, ``MRSTY.RRF`` (licence needed).
        curated_dir: Curated ``concepts.tsv``/``synonyms.tsv``; defaults to the files shipped in
            ``kg/data``. Set ``use_curated=False`` to leave them out.
        use_curated: Whether to load the curated files at all.
    """

    doid: Path | None = None
    radlex: Path | None = None
    slake_kg_dir: Path | None = None
    umls_dir: Path | None = None
    curated_dir: Path | None = None
    use_curated: bool = True

    @classmethod
    def from_data_dir(cls, data_dir: Path, umls_dir: Path | None = None) -> GraphSources:
        """The usual layout of a data folder: ``disease-ontology/doid.obo``, ``radlex/Radlex.csv``,
        ``slake/kg/``; sources missing from the folder are left out."""
        data_dir = Path(data_dir)
        doid = data_dir / "disease-ontology" / "doid.obo"
        radlex = data_dir / "radlex" / "Radlex.csv"
        slake = data_dir / "slake" / "kg"
        return cls(
            doid=doid if doid.is_file() else None,
            radlex=radlex if radlex.is_file() else None,
            slake_kg_dir=slake if slake.is_dir() else None,
            umls_dir=umls_dir,
        )

    def files(self) -> Iterator[Path]:
        """Every file the build reads (existing ones), for the cache key."""
        candidates: list[Path] = [p for p in (self.doid, self.radlex) if p is not None]
        if self.slake_kg_dir is not None:
            candidates.extend(Path(self.slake_kg_dir) / name for name in SLAKE_FILES)
        if self.umls_dir is not None:
            candidates.extend(Path(self.umls_dir) / name for name in UMLS_FILES)
        if self.use_curated:
            curated = Path(self.curated_dir) if self.curated_dir is not None else DATA_DIR
            candidates.extend(curated / name for name in ("concepts.tsv", "synonyms.tsv", "relations.tsv"))
        yield from (Path(p) for p in candidates if Path(p).exists())


def _check_exists(sources: GraphSources) -> None:
    for label, path in (("doid", sources.doid), ("radlex", sources.radlex)):
        if path is not None and not Path(path).is_file():
            raise SourceNotFoundError(f"{label} source {path} is not a file")
    for label, path in (("slake_kg_dir", sources.slake_kg_dir), ("umls_dir", sources.umls_dir)):
        if path is not None and not Path(path).is_dir():
            raise SourceNotFoundError(f"{label} source {path} is not a folder")


def load_sources(sources: GraphSources) -> list[SourceData]:
    """Run the loader of every configured source, logging each one's time."""
    _check_exists(sources)
    steps = [
        ("doid", sources.doid, load_obo),
        ("radlex", sources.radlex, load_radlex),
        ("slake", sources.slake_kg_dir, load_slake_kg),
        ("umls", sources.umls_dir, load_umls),
    ]
    loaded: list[SourceData] = []
    for name, path, loader in steps:
        if path is None:
            continue
        started = time.perf_counter()
        loaded.append(loader(Path(path)))
        logger.info(
            "loaded %s (%d concepts) in %.2fs", name, len(loaded[-1].concepts), time.perf_counter() - started
        )
    if sources.use_curated:
        loaded.append(load_curated(sources.curated_dir))
    return loaded


def build_graph(sources: GraphSources) -> ConceptGraph:
    """Load, merge and index every configured source.

    Args:
        sources: The source locations (at least one ontology source should be set).

    Returns:
        The merged ConceptGraph; ``metadata`` records the sources, merge counts and build seconds.

    Raises:
        SourceNotFoundError: A configured path does not exist.
        OntologyFormatError: A source file cannot be parsed (names file and line).
    """
    started = time.perf_counter()
    loaded = load_sources(sources)
    merged = merge_sources(loaded)
    graph = ConceptGraph.from_merged(
        merged, {"sources": {s.name: s.location for s in loaded}, **merged.counts}
    )
    graph.names  # noqa: B018 - build the name index now so that it is cached with the graph
    seconds = time.perf_counter() - started
    graph.metadata["build_seconds"] = round(seconds, 2)
    logger.info(
        "built knowledge graph: %d concepts, %d edges in %.1fs",
        len(merged.concepts),
        len(merged.relations),
        seconds,
    )
    return graph


def cache_key(sources: GraphSources) -> str:
    """Hash of the format and build-rules versions and every source file's path, size and modification time."""
    entries = [[str(p.resolve()), p.stat().st_size, p.stat().st_mtime_ns] for p in sources.files()]
    payload = json.dumps(
        {
            "format": FORMAT_VERSION,
            "rules": BUILD_RULES_VERSION,
            "files": entries,
            "curated": sources.use_curated,
        }
    )
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()[:16]


def load_or_build(cache_dir: Path, sources: GraphSources) -> ConceptGraph:
    """The cached graph for these sources, building and caching it when missing or stale.

    Args:
        cache_dir: Folder for the cache file (``MEDSEARCH_HOME/kg``); created when missing.
        sources: The source locations.

    Returns:
        The graph; ``graph.metadata["cache"]`` is ``"hit"`` when it was loaded from the cache and
        ``"built"`` when it was built now.
    """
    cache_dir = Path(cache_dir)
    _check_exists(sources)
    path = cache_dir / f"graph-{cache_key(sources)}.pkl"
    if path.is_file():
        started = time.perf_counter()
        try:
            graph = ConceptGraph.load(path)
        except KGError as e:
            logger.warning("ignoring unreadable graph cache %s: %s", path, e)
        else:
            graph.metadata["cache"] = "hit"
            logger.info("loaded cached knowledge graph %s in %.2fs", path, time.perf_counter() - started)
            return graph
    graph = build_graph(sources)
    graph.metadata["cache"] = "built"
    graph.save(path)
    for stale in cache_dir.glob("graph-*.pkl"):
        if stale != path:
            stale.unlink(missing_ok=True)
    logger.info("cached knowledge graph at %s", path)
    return graph
