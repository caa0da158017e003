"""kg: the medical knowledge graph (networkx), its loaders, the concept linker and negation detection.

Typical use (engine wires it; kg never imports engine, ui or indexers)::

    from kg import GraphSources, Linker, load_or_build

    graph = load_or_build(home / "kg", GraphSources.from_data_dir(data_dir))
    linker = Linker(graph)
    linker.link("No pneumothorax. Enlarged heart.")  # [Mention(pneumothorax, negated), Mention(cardiomegaly)]
"""

from kg.build import GraphSources, SourceNotFoundError, build_graph, load_or_build
from kg.concepts import LINKABLE_SEMANTIC_TYPES, POLARITIES, Concept, Relation
from kg.errors import (
    ConceptNotFoundError,
    GraphFormatError,
    InvalidArgumentError,
    KGError,
    OntologyFormatError,
)
from kg.expand import Expansion, QueryConcept, covers, denies, expand_concept, query_concepts
from kg.graph import ConceptGraph
from kg.linker import Linker, Mention
from kg.negation import NegationDetector

__all__ = [
    "LINKABLE_SEMANTIC_TYPES",
    "POLARITIES",
    "Concept",
    "ConceptGraph",
    "ConceptNotFoundError",
    "Expansion",
    "GraphFormatError",
    "GraphSources",
    "InvalidArgumentError",
    "KGError",
    "Linker",
    "Mention",
    "NegationDetector",
    "OntologyFormatError",
    "QueryConcept",
    "Relation",
    "SourceNotFoundError",
    "build_graph",
    "covers",
    "denies",
    "expand_concept",
    "load_or_build",
    "query_concepts",
]
