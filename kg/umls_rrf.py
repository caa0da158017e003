"""UMLS Metathesaurus loader (RRF files ``MRCONSO.RRF``, ``MRREL.RRF``, ``MRSTY.RRF``) for licensed users.

UMLS is not shipped (it needs a UMLS licence from the NLM); point ``GraphSources.umls_dir`` at the
``META`` folder of a release. Files are streamed line by line:

- ``MRSTY`` (``CUI|TUI|STN|STY|ATUI|CVF|``) gives each CUI its semantic types, mapped to ours by TUI
  (``TUI_TYPES``); only CUIs of the kept types are loaded (findings, diseases, anatomy, procedures,
  devices by default), which keeps a full release in reach of a laptop.
- ``MRCONSO`` (``CUI|LAT|TS|LUI|STT|SUI|ISPREF|AUI|SAUI|SCUI|SDUI|SAB|TTY|CODE|STR|SRL|SUPPRESS|CVF|``):
  English, unsuppressed atoms. The preferred name is the atom with ``TS=P``, ``STT=PF``,
  ``ISPREF=Y`` (first seen); other strings are synonyms (the consumer health vocabulary, ``CHV``, brings
  lay wordings). MeSH atoms (``SAB=MSH``) add the xref ``MESH:<SDUI>``.
- ``MRREL`` (``CUI1|AUI1|STYPE1|REL|CUI2|AUI2|STYPE2|RELA|RUI|SRUI|SAB|SL|RG|DIR|SUPPRESS|CVF|``): ``REL``
  and ``RELA`` state the relation of CUI2 to CUI1. ``PAR``/``RB`` rows give ``CUI1 is_a CUI2``,
  ``CHD``/``RN`` rows ``CUI2 is_a CUI1``; other rows with a ``RELA`` give ``CUI2 --RELA--> CUI1``
  (``part_of``/``has_part`` normalised to ``part_of``).

Concept ids are ``UMLS:<CUI>``, which is also how the Disease Ontology writes its CUI xrefs, so DOID
terms merge with UMLS concepts through them.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

from kg.concepts import (
    ANATOMY,
    DEVICE,
    DISEASE,
    FINDING,
    IS_A,
    OTHER,
    PART_OF,
    PROCEDURE,
    QUALIFIER,
    SUBSTANCE,
    Concept,
    Relation,
    SourceData,
)
from kg.errors import OntologyFormatError
from kg.normalize import invert_comma_name

logger = logging.getLogger(__name__)

_TYPE_TUIS: dict[str, tuple[str, ...]] = {
    DISEASE: ("T047", "T048", "T191", "T019", "T020", "T190", "T049", "T050"),
    FINDING: ("T033", "T046", "T184", "T037", "T034"),
    ANATOMY: ("T017", "T029", "T023", "T030", "T022", "T024", "T025", "T026", "T018", "T021"),
    PROCEDURE: ("T060", "T061", "T059", "T058"),
    DEVICE: ("T074", "T075", "T203", "T073"),
    QUALIFIER: ("T080", "T081", "T082", "T079", "T169", "T185", "T077", "T078"),
    SUBSTANCE: ("T121", "T109", "T200", "T196", "T031", "T167", "T197", "T130", "T131", "T116", "T126"),
}
TUI_TYPES: dict[str, str] = {tui: semantic_type for semantic_type, tuis in _TYPE_TUIS.items() for tui in tuis}
_TYPE_ORDER = (DISEASE, FINDING, ANATOMY, PROCEDURE, DEVICE, SUBSTANCE, QUALIFIER, OTHER)
DEFAULT_TYPES = frozenset({DISEASE, FINDING, ANATOMY, PROCEDURE, DEVICE})
_SUPPRESSED = {"O", "E", "Y"}
_FIELDS = {"MRCONSO.RRF": 18, "MRREL.RRF": 16, "MRSTY.RRF": 6}
_PARENT_OF_FIRST = {"PAR", "RB"}
_CHILD_OF_FIRST = {"CHD", "RN"}


def _rows(path: Path) -> Iterator[tuple[int, list[str]]]:
    """(line number, fields) of a pipe-delimited RRF file, checking the column count."""
    expected = _FIELDS[path.name]
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            fields = line.rstrip("\r\n").split("|")
            if fields and fields[-1] == "":
                fields.pop()
            if len(fields) != expected:
                raise OntologyFormatError(
                    f"{path}:{number}: expected {expected} '|'-separated fields, got {len(fields)}"
                )
            yield number, fields


def _semantic_types(path: Path) -> dict[str, str]:
    """CUI -> our semantic type (the highest in ``_TYPE_ORDER`` among its TUIs)."""
    found: dict[str, set[str]] = {}
    for _, fields in _rows(path):
        found.setdefault(fields[0], set()).add(TUI_TYPES.get(fields[1], OTHER))
    return {cui: next(t for t in _TYPE_ORDER if t in types) for cui, types in found.items()}


class _Atoms:
    """Names and MeSH ids per CUI collected from MRCONSO."""

    def __init__(self) -> None:
        self.preferred: dict[str, str] = {}
        self.strings: dict[str, dict[str, None]] = {}
        self.mesh: dict[str, dict[str, None]] = {}

    def add(self, fields: list[str]) -> None:
        """Take in one MRCONSO row."""
        cui, text, sab = fields[0], fields[14], fields[11]
        if fields[2] == "P" and fields[4] == "PF" and fields[6] == "Y":
            self.preferred.setdefault(cui, text)
        self.strings.setdefault(cui, {})[text] = None
        if sab == "MSH" and fields[10]:
            self.mesh.setdefault(cui, {})[f"MESH:{fields[10]}"] = None


def _read_atoms(
    path: Path, types: dict[str, str], keep: frozenset[str], sabs: frozenset[str] | None
) -> _Atoms:
    atoms = _Atoms()
    for _, fields in _rows(path):
        if fields[1] != "ENG" or fields[16] in _SUPPRESSED:
            continue
        if types.get(fields[0], OTHER) not in keep or (sabs is not None and fields[11] not in sabs):
            continue
        atoms.add(fields)
    return atoms


def _relation(fields: list[str]) -> Relation | None:
    """The relation stated by one MRREL row, pointing narrower -> broader for hierarchies."""
    cui1, rel, cui2, rela = fields[0], fields[3], fields[4], fields[7]
    first, second = f"UMLS:{cui1}", f"UMLS:{cui2}"
    if rel in _PARENT_OF_FIRST:
        return Relation(first, IS_A, second, "umls")
    if rel in _CHILD_OF_FIRST:
        return Relation(second, IS_A, first, "umls")
    if rela in ("part_of", "has_part"):
        return (
            Relation(second, PART_OF, first, "umls")
            if rela == "part_of"
            else Relation(first, PART_OF, second, "umls")
        )
    return Relation(second, rela, first, "umls") if rela else None


def _concepts(atoms: _Atoms, types: dict[str, str]) -> dict[str, Concept]:
    concepts: dict[str, Concept] = {}
    for cui, strings in atoms.strings.items():
        name = atoms.preferred.get(cui) or next(iter(strings))
        concept_id = f"UMLS:{cui}"
        # MeSH-style inverted names ("Pneumonia, Lobar") are also kept in natural order.
        texts = dict.fromkeys(variant for text in strings for variant in (text, invert_comma_name(text)))
        concepts[concept_id] = Concept(
            id=concept_id,
            name=name,
            synonyms=tuple(text for text in texts if text != name),
            semantic_type=types.get(cui, OTHER),
            xrefs=tuple(atoms.mesh.get(cui, {})),
            sources=("umls",),
        )
    return concepts


def _read_relations(path: Path, concepts: dict[str, Concept]) -> list[Relation]:
    """Unsuppressed MRREL relations between loaded concepts, deduplicated, self-loops dropped."""
    seen: dict[Relation, None] = {}
    for _, fields in _rows(path):
        relation = _relation(fields) if fields[14] not in _SUPPRESSED else None
        if relation is None or relation.subject == relation.object or relation in seen:
            continue
        if relation.subject in concepts and relation.object in concepts:
            seen[relation] = None
    return list(seen)


def load_umls(
    directory: Path, keep_types: frozenset[str] = DEFAULT_TYPES, sabs: frozenset[str] | None = None
) -> SourceData:
    """Load concepts, names and relations from UMLS RRF files.

    Args:
        directory: Folder with ``MRCONSO.RRF``, ``MRREL.RRF`` and ``MRSTY.RRF`` (a release's ``META``).
        keep_types: Our semantic types to load (CUIs of other types are skipped).
        sabs: Source vocabularies whose atoms are read (e.g. ``{"MSH", "SNOMEDCT_US", "CHV"}``); None reads all.

    Returns:
        SourceData with ``UMLS:<CUI>`` concepts and their relations.

    Raises:
        OntologyFormatError: A missing file, or a row with the wrong number of fields (naming file and line).
    """
    directory = Path(directory)
    for name in _FIELDS:
        if not (directory / name).is_file():
            raise OntologyFormatError(
                f"{directory}: missing {name} (expected the META folder of a UMLS release)"
            )
    types = _semantic_types(directory / "MRSTY.RRF")
    atoms = _read_atoms(directory / "MRCONSO.RRF", types, keep_types, sabs)
    data = SourceData(name="umls", location=str(directory))
    data.concepts = _concepts(atoms, types)
    data.relations = _read_relations(directory / "MRREL.RRF", data.concepts)
    logger.info(
        "read %d UMLS concepts, %d relations from %s", len(data.concepts), len(data.relations), directory
    )
    return data
