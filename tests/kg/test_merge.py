"""Merge rules: by shared id/xref, by name inside a semantic group, by name = exact synonym; never two
concepts of one source."""

from __future__ import annotations

from kg.concepts import DISEASE, FINDING, QUALIFIER, Concept, Relation, SourceData
from kg.merge import merge_sources


def _source(name: str, *concepts: Concept, relations: tuple[Relation, ...] = ()) -> SourceData:
    return SourceData(name=name, concepts={c.id: c for c in concepts}, relations=list(relations))


def test_name_merge_across_sources_keeps_ids_as_aliases(small_graph) -> None:
    pneumothorax = small_graph.concept("pneumothorax")
    assert pneumothorax.id == "DOID:1673"
    assert {"doid", "radlex", "umls", "slake"} <= set(pneumothorax.sources)
    for alias in ("RID5352", "UMLS:C0032326", "SLAKE:pneumothorax", "MESH:D011030"):
        assert small_graph.concept(alias).id == "DOID:1673"


def test_exact_synonym_merges_with_a_preferred_name(small_graph) -> None:
    hernia = small_graph.concept("RID4897")  # RadLex "hiatal hernia"
    assert hernia.id == "DOID:12642"  # DOID "hiatus hernia", exact synonym "hiatal hernia"
    assert hernia.name == "hiatus hernia"


def test_curated_same_as_and_synonyms(small_graph) -> None:
    calcification = small_graph.concept("calcification")
    assert calcification.id == "DOID:182"  # RadLex calcification same_as DOID calcinosis
    assert "RID5196" in calcification.xrefs
    effusion = small_graph.concept("fluid around the lung")
    assert effusion.id == "RID34539"
    assert "curated" in effusion.sources


def test_no_name_merge_for_qualifiers_or_across_groups() -> None:
    merged = merge_sources(
        [
            _source("doid", Concept("DOID:1", "left", semantic_type=DISEASE, sources=("doid",))),
            _source("radlex", Concept("RID1", "left", semantic_type=QUALIFIER, sources=("radlex",))),
        ]
    )
    assert set(merged.concepts) == {"DOID:1", "RID1"}


def test_xref_shared_within_one_source_does_not_merge() -> None:
    doid = _source(
        "doid",
        Concept("DOID:1", "lung disease a", semantic_type=DISEASE, xrefs=("MESH:D1",), sources=("doid",)),
        Concept("DOID:2", "lung disease b", semantic_type=DISEASE, xrefs=("MESH:D1",), sources=("doid",)),
    )
    umls = _source("umls", Concept("UMLS:C1", "Lung Disease", semantic_type=DISEASE, xrefs=("MESH:D1",)))
    merged = merge_sources([doid, umls])
    assert set(merged.concepts) == {"DOID:1", "DOID:2", "UMLS:C1"}
    assert "MESH:D1" not in merged.aliases  # ambiguous


def test_a_cluster_never_holds_two_concepts_of_one_source() -> None:
    doid = _source(
        "doid",
        Concept("DOID:1", "effusion", semantic_type=DISEASE, xrefs=("UMLS:C1",), sources=("doid",)),
        Concept("DOID:2", "pleural effusion", semantic_type=DISEASE, sources=("doid",)),
    )
    radlex = _source(
        "radlex",
        Concept("RID1", "pleural effusion", semantic_type=FINDING, sources=("radlex",)),
    )
    umls = _source("umls", Concept("UMLS:C1", "pleural effusion", semantic_type=FINDING, sources=("umls",)))
    merged = merge_sources([doid, radlex, umls])
    assert merged.counts["refused"] >= 1
    for concept in merged.concepts.values():
        doid_members = [m for m in (concept.id, *concept.xrefs) if m.startswith("DOID:")]
        assert len(doid_members) <= 1


def test_relations_are_rewritten_to_canonical_ids() -> None:
    doid = _source(
        "doid",
        Concept("DOID:1", "pneumothorax", semantic_type=DISEASE, sources=("doid",)),
        Concept("DOID:2", "pleural disease", semantic_type=DISEASE, sources=("doid",)),
        relations=(Relation("DOID:1", "is_a", "DOID:2", "doid"),),
    )
    radlex = _source(
        "radlex",
        Concept("RID1", "pneumothorax", semantic_type=FINDING, sources=("radlex",)),
        Concept("RID2", "respiratory disorder", semantic_type=FINDING, sources=("radlex",)),
        relations=(Relation("RID1", "is_a", "RID2", "radlex"),),
    )
    merged = merge_sources([doid, radlex])
    triples = {(r.subject, r.relation, r.object) for r in merged.relations}
    assert triples == {("DOID:1", "is_a", "DOID:2"), ("DOID:1", "is_a", "RID2")}
    assert merged.aliases["RID1"] == "DOID:1"
