"""The records every loader produces and the graph stores: concepts, relations, semantic types.

Semantic types are our own small vocabulary, shared by all sources so that the linker and the merge
rules can reason about them: each loader maps its source's categories (a RadLex top-level branch, a
UMLS TUI, "disease" for the Disease Ontology) onto these names.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

# Semantic types (values of Concept.semantic_type).
DISEASE = "disease"
FINDING = "finding"
IMAGING_OBSERVATION = "imaging_observation"
ANATOMY = "anatomy"
PROCEDURE = "procedure"
DEVICE = "device"
MODALITY = "modality"
SUBSTANCE = "substance"
QUALIFIER = "qualifier"
VALUE = "value"  # a SLAKE attribute value ("antibiotic drug therapy"): a fact, not a concept to link
OTHER = "other"

SEMANTIC_TYPES = (
    DISEASE,
    FINDING,
    IMAGING_OBSERVATION,
    ANATOMY,
    PROCEDURE,
    DEVICE,
    MODALITY,
    SUBSTANCE,
    QUALIFIER,
    VALUE,
    OTHER,
)
# What the linker looks for by default. Qualifiers ("left", "normal", "size"), substances ("air",
# "water"), values and unclassified terms would flood every report with meaningless mentions.
LINKABLE_SEMANTIC_TYPES = frozenset(
    {DISEASE, FINDING, IMAGING_OBSERVATION, ANATOMY, PROCEDURE, DEVICE, MODALITY}
)
# Findings as a searcher means them (what evaluation and polarity matter most for).
FINDING_SEMANTIC_TYPES = frozenset({DISEASE, FINDING, IMAGING_OBSERVATION})
# Name-based merging is allowed only inside one of these groups (never for qualifiers or values).
MERGE_GROUPS: dict[str, str] = {
    DISEASE: "disorder",
    FINDING: "disorder",
    IMAGING_OBSERVATION: "disorder",
    ANATOMY: "anatomy",
    PROCEDURE: "procedure",
    DEVICE: "device",
    MODALITY: "modality",
}

# Relation names used on graph edges (sources add their own, e.g. SLAKE "symptom", "treatment").
IS_A = "is_a"
PART_OF = "part_of"
MENTIONS = "mentions"  # media node -> concept

Polarity = Literal["present", "negated", "uncertain"]
POLARITIES: tuple[str, ...] = ("present", "negated", "uncertain")

# Source names, in the order that picks a merged concept's id, name and semantic type. The curated
# concepts (kg/data) come before SLAKE, whose small VQA graph has uneven names ("Miocardial Infarction").
SOURCE_PRIORITY = ("doid", "radlex", "umls", "curated", "slake")


@dataclass(frozen=True)
class Concept:
    """One concept of the graph (after merging, one node per concept).

    Attributes:
        id: Canonical id (``DOID:1673``, ``RID5352``, ``UMLS:C0032326``, ``SLAKE:lung``, ``MEDSEARCH:...``).
        name: Preferred name.
        synonyms: Other names (exact synonyms of every merged source, curated synonyms).
        semantic_type: One of ``SEMANTIC_TYPES``.
        xrefs: Cross-references and the ids of merged concepts, e.g. ``("UMLS:C0018800", "MESH:D006332")``.
        sources: Source names this concept came from, e.g. ``("doid", "radlex")``.
        definition: Text definition, empty when the sources give none.
    """

    id: str
    name: str
    synonyms: tuple[str, ...] = ()
    semantic_type: str = OTHER
    xrefs: tuple[str, ...] = ()
    sources: tuple[str, ...] = ()
    definition: str = ""


@dataclass(frozen=True)
class Relation:
    """A directed, typed edge between two concept ids: ``subject --relation--> object``.

    ``is_a`` and ``part_of`` point from the narrower/part to the broader/whole concept.
    """

    subject: str
    relation: str
    object: str
    source: str = ""


@dataclass
class SourceData:
    """What one loader returns: concepts, relations among them, and alternative ids.

    Attributes:
        name: Source name (one of ``SOURCE_PRIORITY``).
        concepts: Concepts keyed by their source id.
        relations: Edges whose ends are ids of ``concepts`` (or, for curated data, any resolvable id).
        aliases: Alternative id -> concept id (OBO ``alt_id``), resolvable by ``ConceptGraph.concept``.
        location: File or folder read, for messages.
    """

    name: str
    concepts: dict[str, Concept] = field(default_factory=dict)
    relations: list[Relation] = field(default_factory=list)
    aliases: dict[str, str] = field(default_factory=dict)
    location: str = ""
