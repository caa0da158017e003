"""OBO 1.2 flat-file loader (the Human Disease Ontology's ``doid.obo``; any OBO ontology works).

Reads ``[Term]`` stanzas: ``id``, ``name``, ``def``, ``synonym`` (only EXACT synonyms are kept;
NARROW, BROAD and RELATED name other concepts), ``xref`` (``UMLS_CUI:`` becomes
``UMLS:``, ``SNOMEDCT_US_2023_03_01:`` becomes ``SNOMEDCT:``), ``is_a``, ``relationship``,
``alt_id`` and ``is_obsolete``/``replaced_by``. Obsolete terms are dropped; their ids become aliases of
the replacement when there is one. ``[Typedef]`` and other stanzas are skipped.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from pathlib import Path

from kg.concepts import DISEASE, IS_A, Concept, Relation, SourceData
from kg.errors import OntologyFormatError

logger = logging.getLogger(__name__)

_QUOTED_RE = re.compile(r'^"((?:[^"\\]|\\.)*)"\s*(.*)$')
_TAG_RE = re.compile(r"^([A-Za-z_][A-Za-z0-9_-]*):\s?(.*)$")
_KEPT_SYNONYM_SCOPES = {"EXACT"}
_XREF_PREFIXES = {"UMLS_CUI": "UMLS", "MSH": "MESH", "MESH": "MESH"}


@dataclass
class _Stanza:
    """Fields of one ``[Term]`` stanza while it is being read."""

    line: int
    tags: dict[str, list[tuple[int, str]]] = field(default_factory=dict)

    def add(self, tag: str, value: str, line: int) -> None:
        """Record one ``tag: value`` line."""
        self.tags.setdefault(tag, []).append((line, value))

    def values(self, tag: str) -> list[tuple[int, str]]:
        """(line, value) of every occurrence of a tag."""
        return self.tags.get(tag, [])

    def first(self, tag: str) -> str:
        """Value of the first occurrence of a tag, or an empty string."""
        values = self.tags.get(tag)
        return values[0][1] if values else ""


def normalize_xref(xref: str) -> str:
    """Canonical spelling of a cross-reference: ``UMLS_CUI:C0032326`` -> ``UMLS:C0032326``."""
    prefix, sep, local = xref.strip().partition(":")
    if not sep:
        return xref.strip()
    prefix = prefix.upper()
    if prefix.startswith("SNOMEDCT"):
        prefix = "SNOMEDCT"
    return f"{_XREF_PREFIXES.get(prefix, prefix)}:{local.strip()}"


def _unquote(path: Path, line: int, value: str) -> tuple[str, str]:
    """Split ``"quoted text" rest`` into (unescaped text, rest); raise on a missing quote."""
    match = _QUOTED_RE.match(value)
    if not match:
        raise OntologyFormatError(f"{path}:{line}: expected a quoted string, got {value[:60]!r}")
    return re.sub(r"\\(.)", r"\1", match.group(1)), match.group(2)


def _first_word(value: str) -> str:
    """The id in ``DOID:123 ! comment`` or ``part_of DOID:123 {...}``."""
    return value.split("!", 1)[0].split("{", 1)[0].strip()


def _read_stanzas(path: Path) -> list[_Stanza]:
    """Parse the file into ``[Term]`` stanzas, checking line syntax as it goes."""
    stanzas: list[_Stanza] = []
    current: _Stanza | None = None
    in_term = False
    with path.open(encoding="utf-8") as handle:
        for number, raw in enumerate(handle, start=1):
            line = raw.rstrip("\n").strip()
            if not line or line.startswith("!"):
                continue
            if line.startswith("["):
                if not line.endswith("]"):
                    raise OntologyFormatError(f"{path}:{number}: unterminated stanza header {line!r}")
                in_term = line == "[Term]"
                current = _Stanza(number) if in_term else None
                if current is not None:
                    stanzas.append(current)
                continue
            match = _TAG_RE.match(line)
            if not match:
                raise OntologyFormatError(f"{path}:{number}: expected 'tag: value', got {line[:60]!r}")
            if in_term and current is not None:
                current.add(match.group(1), match.group(2).strip(), number)
    return stanzas


def _concept_from(path: Path, stanza: _Stanza, semantic_type: str, source: str) -> Concept:
    """Build a Concept from a live (non-obsolete) stanza."""
    term_id, name = stanza.first("id"), stanza.first("name")
    if not name:
        raise OntologyFormatError(f"{path}:{stanza.line}: term {term_id} has no 'name'")
    synonyms: list[str] = []
    for line, value in stanza.values("synonym"):
        text, rest = _unquote(path, line, value)
        scope = rest.split(" ", 1)[0] if rest else "RELATED"
        if scope in _KEPT_SYNONYM_SCOPES and text and text != name:
            synonyms.append(text)
    definition = ""
    if stanza.values("def"):
        line, value = stanza.values("def")[0]
        definition = _unquote(path, line, value)[0]
    xrefs = tuple(dict.fromkeys(normalize_xref(_first_word(v)) for _, v in stanza.values("xref")))
    return Concept(
        id=term_id,
        name=name,
        synonyms=tuple(dict.fromkeys(synonyms)),
        semantic_type=semantic_type,
        xrefs=xrefs,
        sources=(source,),
        definition=definition,
    )


def _relations_from(path: Path, stanza: _Stanza, source: str) -> list[Relation]:
    """``is_a`` and ``relationship`` lines of a stanza as relations."""
    term_id = stanza.first("id")
    relations = [Relation(term_id, IS_A, _first_word(v), source) for _, v in stanza.values("is_a")]
    for line, value in stanza.values("relationship"):
        parts = _first_word(value).split()
        if len(parts) != 2:
            raise OntologyFormatError(f"{path}:{line}: expected 'relationship: TYPE ID', got {value[:60]!r}")
        relations.append(Relation(term_id, parts[0], parts[1], source))
    return relations


def load_obo(path: Path, source: str = "doid", semantic_type: str = DISEASE) -> SourceData:
    """Load an OBO 1.2 file.

    Args:
        path: The ``.obo`` file.
        source: Source name recorded on every concept.
        semantic_type: Semantic type given to every term (the Disease Ontology holds diseases).

    Returns:
        SourceData with live terms, their ``is_a``/``relationship`` edges and ``alt_id`` aliases.

    Raises:
        OntologyFormatError: Naming file and line of a syntax error, a term without id or name, a
            duplicate id, or an ``is_a`` pointing to an unknown term.
    """
    path = Path(path)
    data = SourceData(name=source, location=str(path))
    obsolete = _read_terms(path, data, semantic_type, source)
    for old_id, new_id in obsolete.items():
        if new_id in data.concepts:
            data.aliases[old_id] = new_id
    _check_relations(path, data)
    logger.info(
        "read %d terms (%d obsolete skipped), %d relations from %s",
        len(data.concepts),
        len(obsolete),
        len(data.relations),
        path,
    )
    return data


def _read_terms(path: Path, data: SourceData, semantic_type: str, source: str) -> dict[str, str]:
    """Fill ``data`` with live terms; return obsolete id -> replacement id (may be empty)."""
    obsolete: dict[str, str] = {}
    for stanza in _read_stanzas(path):
        term_id = stanza.first("id")
        if not term_id:
            raise OntologyFormatError(f"{path}:{stanza.line}: [Term] stanza without 'id'")
        if term_id in data.concepts:
            raise OntologyFormatError(f"{path}:{stanza.line}: duplicate term id {term_id}")
        if stanza.first("is_obsolete") == "true":
            obsolete[term_id] = _first_word(stanza.first("replaced_by"))
            continue
        data.concepts[term_id] = _concept_from(path, stanza, semantic_type, source)
        data.relations.extend(_relations_from(path, stanza, source))
        for _, alt_id in stanza.values("alt_id"):
            data.aliases[_first_word(alt_id)] = term_id
    return obsolete


def _check_relations(path: Path, data: SourceData) -> None:
    """Drop edges to obsolete terms (resolving them through aliases); fail on unknown targets."""
    kept: list[Relation] = []
    for relation in data.relations:
        target = data.aliases.get(relation.object, relation.object)
        if target in data.concepts:
            kept.append(Relation(relation.subject, relation.relation, target, relation.source))
        elif relation.relation == IS_A and ":" not in target:
            raise OntologyFormatError(f"{path}: term {relation.subject} has malformed is_a target {target!r}")
        else:
            logger.debug(
                "%s: %s %s %s points outside the file", path, relation.subject, relation.relation, target
            )
    data.relations = kept
