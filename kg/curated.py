"""Loader for the curated files shipped in ``kg/data`` (the graph's fourth source, ``curated``).

These files are written by the medsearch maintainers, not taken from an ontology:

- ``concepts.tsv``: a handful of chest-radiograph concepts missing from the Disease Ontology and from
  the shared RadLex reduction (cardiomegaly, airspace disease, calcified granuloma, ...), with ids
  ``MEDSEARCH:<slug>``, is_a parents and, where known, UMLS/MeSH xrefs.
- ``synonyms.tsv``: extra names for existing concepts: lay wordings ("enlarged heart", "fluid around
  the lung", "collapsed lung"), usual report wordings, abbreviations. UMLS's consumer health
  vocabulary covers the same need at scale for licensed users.
- ``relations.tsv``: cross-ontology links the sources lack: ``same_as`` (merges two concepts, e.g.
  RadLex "calcification" and DOID "calcinosis") and ``is_a`` edges (RadLex "osteopenia" is_a DOID
  "metabolic bone disease").

They are general-purpose radiology vocabulary, deliberately not tuned to any evaluation query list.
A synonym row names its concept by any id the built graph resolves (``DOID:1673``, ``RID34539``,
``UMLS:C0032326``, ``MESH:D010996``): it becomes a stub concept carrying that id as an xref, which the
merge step folds into the concept holding the id, or drops with a warning when no source has it.
"""

from __future__ import annotations

import csv
import logging
from collections.abc import Iterator
from pathlib import Path

from kg.concepts import IS_A, SEMANTIC_TYPES, Concept, Relation, SourceData
from kg.errors import OntologyFormatError

logger = logging.getLogger(__name__)

DATA_DIR = Path(__file__).resolve().parent / "data"
STUB_PREFIX = "CURATED:"
_CONCEPT_COLUMNS = ["id", "name", "semantic_type", "parents", "xrefs", "note"]
_SYNONYM_COLUMNS = ["concept", "synonym", "note"]
_RELATION_COLUMNS = ["subject", "relation", "object", "note"]
SAME_AS = "same_as"


def _rows(path: Path, columns: list[str]) -> Iterator[tuple[int, dict[str, str]]]:
    """(line, row) of a tab-separated file with '#' comment lines and a header naming ``columns``."""
    with path.open(encoding="utf-8") as handle:
        lines = [
            (n, line) for n, line in enumerate(handle, start=1) if line.strip() and not line.startswith("#")
        ]
    if not lines:
        raise OntologyFormatError(f"{path}: empty file (expected a header row with columns {columns})")
    header_line, header = lines[0]
    if header.rstrip("\r\n").split("\t") != columns:
        raise OntologyFormatError(f"{path}:{header_line}: expected header columns {columns}")
    for number, line in lines[1:]:
        cells = next(csv.reader([line.rstrip("\r\n")], delimiter="\t"))
        if len(cells) != len(columns) or not cells[0].strip() or not cells[1].strip():
            raise OntologyFormatError(
                f"{path}:{number}: expected {len(columns)} tab-separated cells, got {cells!r}"
            )
        yield number, {column: cell.strip() for column, cell in zip(columns, cells)}


def _split(cell: str) -> list[str]:
    return [item.strip() for item in cell.split(",") if item.strip()]


def _read_concepts(path: Path, data: SourceData) -> None:
    for number, row in _rows(path, _CONCEPT_COLUMNS):
        if row["semantic_type"] not in SEMANTIC_TYPES:
            raise OntologyFormatError(
                f"{path}:{number}: unknown semantic type {row['semantic_type']!r}; choose one of {SEMANTIC_TYPES}"
            )
        data.concepts[row["id"]] = Concept(
            id=row["id"],
            name=row["name"],
            semantic_type=row["semantic_type"],
            xrefs=tuple(_split(row["xrefs"])),
            sources=("curated",),
            definition=row["note"],
        )
        data.relations.extend(
            Relation(row["id"], IS_A, parent, "curated") for parent in _split(row["parents"])
        )


def _read_synonyms(path: Path, data: SourceData) -> None:
    extra: dict[str, list[str]] = {}
    for _, row in _rows(path, _SYNONYM_COLUMNS):
        extra.setdefault(row["concept"], []).append(row["synonym"])
    for ref, synonyms in extra.items():
        if ref in data.concepts:
            concept = data.concepts[ref]
            merged = tuple(dict.fromkeys((*concept.synonyms, *synonyms)))
            data.concepts[ref] = Concept(**{**concept.__dict__, "synonyms": merged})
        else:
            stub_id = STUB_PREFIX + ref
            data.concepts[stub_id] = Concept(
                id=stub_id, name=synonyms[0], synonyms=tuple(synonyms[1:]), xrefs=(ref,), sources=("curated",)
            )


def _read_relations(path: Path, data: SourceData) -> None:
    """``same_as`` rows become a nameless stub holding both ids (merging them); others become edges."""
    for _, row in _rows(path, _RELATION_COLUMNS):
        subject, relation, obj = row["subject"], row["relation"], row["object"]
        if relation == SAME_AS:
            stub_id = f"{STUB_PREFIX}{SAME_AS}:{subject}={obj}"
            data.concepts[stub_id] = Concept(id=stub_id, name="", xrefs=(subject, obj), sources=("curated",))
        else:
            data.relations.append(Relation(subject, relation, obj, "curated"))


def load_curated(directory: Path | None = None) -> SourceData:
    """Load ``concepts.tsv`` and ``synonyms.tsv`` (either may be absent).

    Args:
        directory: Folder holding the files; defaults to the package's ``kg/data``.

    Returns:
        SourceData named ``curated``: curated concepts, and one stub concept per referenced id holding
        the synonyms for it (its only xref is that id).

    Raises:
        OntologyFormatError: A bad header, row or semantic type (naming file and line).
    """
    directory = Path(directory) if directory is not None else DATA_DIR
    data = SourceData(name="curated", location=str(directory))
    if (directory / "concepts.tsv").is_file():
        _read_concepts(directory / "concepts.tsv", data)
    if (directory / "synonyms.tsv").is_file():
        _read_synonyms(directory / "synonyms.tsv", data)
    if (directory / "relations.tsv").is_file():
        _read_relations(directory / "relations.tsv", data)
    logger.info("read %d curated concepts and synonym sets from %s", len(data.concepts), directory)
    return data
