"""ConceptGraph queries: lookup, hierarchy, relations, paths, media links, stats, save/load."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest

from kg import ConceptGraph, ConceptNotFoundError, GraphFormatError, InvalidArgumentError
from kg.concepts import IS_A


def test_concept_by_id_alias_xref_and_name(small_graph: ConceptGraph) -> None:
    assert small_graph.concept("DOID:1673").name == "pneumothorax"
    assert small_graph.concept("doid:1673").id == "DOID:1673"
    assert small_graph.concept("Pneumothoraces").id == "DOID:1673"  # plural, via normalisation
    assert small_graph.concept("MESH:D006332").id == small_graph.concept("cardiomegaly").id
    assert "pneumothorax" in small_graph
    assert "no such thing" not in small_graph


def test_concept_not_found_suggests_close_names(small_graph: ConceptGraph) -> None:
    with pytest.raises(ConceptNotFoundError, match="pneumothorax") as error:
        small_graph.concept("pneumothorx")
    assert "did you mean" in str(error.value)
    assert isinstance(error.value, KeyError)


def test_find_exact_then_prefix(small_graph: ConceptGraph) -> None:
    names = [c.name for c in small_graph.find("pleural", limit=5)]
    assert "pleural effusion" in names
    assert all(c.semantic_type != "value" for c in small_graph.find("pleural"))
    assert small_graph.find("Enlarged heart")[0].id == small_graph.concept("cardiomegaly").id


def test_parents_children_descendants(small_graph: ConceptGraph) -> None:
    assert {c.id for c in small_graph.parents("pneumothorax")} == {"DOID:1532", "RID5316"}
    assert [c.id for c in small_graph.children("DOID:1532")] == ["DOID:1673"]
    lung_disease = {c.id for c in small_graph.descendants("DOID:850")}
    assert {"DOID:552", "DOID:3083", "DOID:11396", "UMLS:C0032300"} <= lung_disease
    assert "UMLS:C0032300" not in {c.id for c in small_graph.descendants("DOID:850", depth=1)}
    assert [c.name for c in small_graph.ancestors("RID34539", depth=2)] == ["effusion", "fluid disorder"]
    with pytest.raises(InvalidArgumentError):
        small_graph.descendants("DOID:850", depth=-1)


def test_path_explains_how_two_concepts_connect(small_graph: ConceptGraph) -> None:
    path = small_graph.path("lung disease", "lobar pneumonia")
    assert path == [("DOID:552", IS_A, "DOID:850"), ("UMLS:C0032300", IS_A, "DOID:552")]
    assert small_graph.path("DOID:850", "DOID:850") == []
    assert small_graph.path("lung disease", "lobar pneumonia", max_len=1) == []
    site = small_graph.path("cardiomegaly", "heart")
    assert len(site) == 1 and site[0][0] == small_graph.concept("cardiomegaly").id


def test_related_and_inverse(small_graph: ConceptGraph) -> None:
    cardiomegaly = dict(small_graph.related("cardiomegaly", inverse=False))
    assert cardiomegaly["has_finding_site"].name == "heart"
    assert cardiomegaly["symptom"].name == "chest tightness, arrhythmia"
    heart = small_graph.related("heart")
    assert ("location_of", small_graph.concept("cardiomegaly")) in heart


def test_media_links_with_polarity(fresh_graph: ConceptGraph) -> None:
    fresh_graph.link_media("iu:1", "pleural effusion", "negated")
    fresh_graph.link_media("iu:2", "RID34539", "present")
    fresh_graph.link_media("iu:2", "RID34539", "present")  # idempotent
    fresh_graph.link_media("iu:3", "fluid around the lung", "uncertain")
    assert fresh_graph.media("pleural effusion") == ["iu:1", "iu:2", "iu:3"]
    assert fresh_graph.media("pleural effusion", polarity="present") == ["iu:2"]
    assert fresh_graph.media_concepts("iu:1") == [("RID34539", "negated")]
    assert fresh_graph.stats()["media_links"] == {"negated": 1, "present": 1, "uncertain": 1}
    assert fresh_graph.unlink_media("iu:2") == 1
    assert fresh_graph.unlink_media("iu:404") == 0
    assert fresh_graph.media("pleural effusion", polarity="present") == []
    with pytest.raises(InvalidArgumentError, match="polarity"):
        fresh_graph.link_media("iu:1", "pleural effusion", "absent")  # type: ignore[arg-type]
    with pytest.raises(ConceptNotFoundError):
        fresh_graph.link_media("iu:1", "no such concept")


def test_stats(small_graph: ConceptGraph) -> None:
    stats = small_graph.stats()
    assert stats["concepts"] == len(small_graph)
    assert stats["relations"]["is_a"] > 50
    assert {"doid", "radlex", "slake", "umls", "curated"} <= set(stats["sources"])
    assert stats["merged_concepts"] > 10
    assert "build_seconds" in stats["metadata"]


def test_save_load_round_trip(fresh_graph: ConceptGraph, tmp_path: Path) -> None:
    fresh_graph.link_media("iu:7", "cardiomegaly", "present")
    path = tmp_path / "kg" / "graph.pkl"
    fresh_graph.save(path)
    assert [p.name for p in path.parent.iterdir()] == ["graph.pkl"]  # no temporary file left
    loaded = ConceptGraph.load(path)
    assert loaded.stats() == fresh_graph.stats()
    assert loaded.concept("enlarged heart") == fresh_graph.concept("enlarged heart")
    assert loaded.media("cardiomegaly") == ["iu:7"]
    assert loaded.parents("pneumothorax") == fresh_graph.parents("pneumothorax")


def test_load_rejects_other_files_and_versions(tmp_path: Path) -> None:
    path = tmp_path / "graph.pkl"
    path.write_bytes(b"not a pickle")
    with pytest.raises(GraphFormatError, match="not a readable"):
        ConceptGraph.load(path)
    path.write_bytes(pickle.dumps({"format": "medsearch-kg", "version": 999}))
    with pytest.raises(GraphFormatError, match="version 999"):
        ConceptGraph.load(path)
    path.write_bytes(pickle.dumps([1, 2]))
    with pytest.raises(GraphFormatError, match="not a medsearch graph"):
        ConceptGraph.load(path)
