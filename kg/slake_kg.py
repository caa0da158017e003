"""SLAKE knowledge-graph loader (``en_disease.csv``, ``en_organ.csv``, ``en_organ_rel.csv``).

Each file holds ``head#attribute#value`` triplets under a header row. Modelling choices:

- Diseases become ``disease`` concepts, organs and body systems ``anatomy`` concepts, with ids
  ``SLAKE:<slug of the name>`` (``SLAKE:lobar_pneumonia``, ``SLAKE:lung``).
- ``alias`` values are split on commas into synonyms; ``description``/``definition`` fill the
  concept definition.
- ``location`` (disease -> organ) and ``belong to`` (organ -> system) link two concepts.
- Every other attribute (symptom, cause, treatment, prevention, function, effect, ...) points to a
  *value node*: a concept of semantic type ``value`` whose name is the full value text, as SLAKE's
  knowledge questions expect it ("Chest tightness, arrhythmia"). Equal texts share one node. Value
  nodes are never linked in text; ``ConceptGraph.related`` returns them.

Relation names are the attribute names with spaces as underscores (``belong_to``, ``symptom``).
SLAKE KG: Liu et al., ISBI 2021, MIT licence (Awenbocc/mvqa-kg).
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Iterator
from pathlib import Path

from kg.concepts import ANATOMY, DISEASE, VALUE, Concept, Relation, SourceData
from kg.errors import OntologyFormatError

logger = logging.getLogger(__name__)

FILES = ("en_disease.csv", "en_organ.csv", "en_organ_rel.csv")
_DEFINITION_ATTRIBUTES = {"description", "definition"}
_CONCEPT_ATTRIBUTES = {"location": ANATOMY, "belong to": ANATOMY}


def slake_id(name: str) -> str:
    """``"Lobar Pneumonia"`` -> ``"SLAKE:lobar_pneumonia"``."""
    return "SLAKE:" + re.sub(r"[^a-z0-9]+", "_", name.casefold()).strip("_")


def value_id(text: str) -> str:
    """Stable id of a value node: ``SLAKE:v`` + 10 hex digits of the normalised text's md5."""
    key = " ".join(text.casefold().split())
    return "SLAKE:v" + hashlib.md5(key.encode("utf-8")).hexdigest()[:10]


def _triples(path: Path) -> Iterator[tuple[int, str, str, str]]:
    """(line, head, attribute, value) for each data row; the first row is a header."""
    with path.open(encoding="utf-8-sig") as handle:
        for number, line in enumerate(handle, start=1):
            line = line.rstrip("\r\n")
            if number == 1 or not line.strip():
                continue
            parts = [part.strip() for part in line.split("#", 2)]
            if len(parts) != 3 or not all(parts):
                raise OntologyFormatError(
                    f"{path}:{number}: expected 'head#attribute#value', got {line[:60]!r}"
                )
            yield number, parts[0], parts[1].lower(), parts[2]


def _split_aliases(value: str) -> list[str]:
    """``"potter (i) syndrome, cystic kidney, etc."`` -> ``["potter (i) syndrome", "cystic kidney"]``."""
    items = (item.strip().rstrip(".") for item in value.split(","))
    return [item for item in items if item and item.lower() not in {"etc", "etc."}]


class _Builder:
    """Accumulates concept fields while the three files are read."""

    def __init__(self) -> None:
        self.names: dict[str, str] = {}
        self.types: dict[str, str] = {}
        self.synonyms: dict[str, list[str]] = {}
        self.definitions: dict[str, str] = {}
        self.relations: list[Relation] = []

    def concept(self, name: str, semantic_type: str) -> str:
        """Id of the concept (or value node) named ``name``, registering it."""
        concept_id = value_id(name) if semantic_type == VALUE else slake_id(name)
        self.names.setdefault(concept_id, name)
        if self.types.get(concept_id) in (None, VALUE):
            self.types[concept_id] = semantic_type
        return concept_id

    def add(self, head: str, head_type: str, attribute: str, value: str) -> None:
        """Take in one triplet."""
        head_id = self.concept(head, head_type)
        if attribute == "alias":
            self.synonyms.setdefault(head_id, []).extend(_split_aliases(value))
        elif attribute in _DEFINITION_ATTRIBUTES:
            self.definitions.setdefault(head_id, value)
        else:
            target_type = _CONCEPT_ATTRIBUTES.get(attribute, VALUE)
            target_id = self.concept(value, target_type)
            self.relations.append(Relation(head_id, attribute.replace(" ", "_"), target_id, "slake"))

    def build(self, location: str) -> SourceData:
        """The collected concepts and relations."""
        data = SourceData(name="slake", relations=self.relations, location=location)
        for concept_id, name in self.names.items():
            synonyms = tuple(
                dict.fromkeys(s for s in self.synonyms.get(concept_id, []) if s.lower() != name.lower())
            )
            data.concepts[concept_id] = Concept(
                id=concept_id,
                name=name,
                synonyms=synonyms,
                semantic_type=self.types[concept_id],
                sources=("slake",),
                definition=self.definitions.get(concept_id, ""),
            )
        return data


def load_slake_kg(directory: Path) -> SourceData:
    """Load the SLAKE KG triplet files from a folder.

    Args:
        directory: Folder holding ``en_disease.csv``, ``en_organ.csv`` and ``en_organ_rel.csv``
            (missing files are skipped with a warning).

    Returns:
        SourceData with disease, organ/system and value concepts and their attribute relations.

    Raises:
        OntologyFormatError: A row that is not ``head#attribute#value`` (naming file and line), or a
            folder with none of the three files.
    """
    directory = Path(directory)
    builder = _Builder()
    found = 0
    for file_name in FILES:
        path = directory / file_name
        if not path.is_file():
            logger.warning("SLAKE KG file %s is missing; skipped", path)
            continue
        found += 1
        head_type = DISEASE if file_name == "en_disease.csv" else ANATOMY
        for _, head, attribute, value in _triples(path):
            builder.add(head, head_type, attribute, value)
    if not found:
        raise OntologyFormatError(f"{directory}: no SLAKE KG file found (expected one of {', '.join(FILES)})")
    data = builder.build(str(directory))
    logger.info(
        "read %d SLAKE concepts, %d relations from %s", len(data.concepts), len(data.relations), directory
    )
    return data
