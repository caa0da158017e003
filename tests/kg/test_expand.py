"""Query concepts, expansion to narrower concepts with paths, and downward negation."""

from __future__ import annotations

from kg import covers, denies, expand_concept, query_concepts


def test_query_concepts_carry_the_polarity_asked_for(linker) -> None:
    [effusion] = query_concepts(linker, "no effusion")
    assert (effusion.name, effusion.polarity) == ("effusion", "negated")
    [heart] = query_concepts(linker, "enlarged heart")
    assert heart.polarity == "present" and heart.name == "Cardiomegaly"


def test_expansion_lists_narrower_concepts_with_paths(small_graph) -> None:
    expansions = {e.concept_id: e for e in expand_concept(small_graph, "lung disease")}
    assert expansions["DOID:850"].distance == 0
    lobar = expansions["UMLS:C0032300"]
    assert lobar.distance == 2
    assert lobar.path == (("UMLS:C0032300", "is_a", "DOID:552"), ("DOID:552", "is_a", "DOID:850"))
    assert len(expand_concept(small_graph, "lung disease", max_depth=1)) < len(expansions)
    assert len(expand_concept(small_graph, "lung disease", limit=2)) == 2


def test_negation_flows_down_the_hierarchy(small_graph) -> None:
    assert denies(small_graph, "effusion", "pleural effusion")  # "no effusion" denies a pleural effusion
    assert not denies(small_graph, "pleural effusion", "effusion")
    assert covers(small_graph, "RID34539", "RID34539")
