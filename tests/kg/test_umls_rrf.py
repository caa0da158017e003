"""UMLS RRF loader on a tiny fixture in the real pipe-delimited layout; merging with DOID by CUI and MeSH."""

from __future__ import annotations

from pathlib import Path

import pytest

from kg import GraphSources, build_graph
from kg.concepts import ANATOMY, DISEASE, FINDING, IS_A, PART_OF
from kg.errors import OntologyFormatError
from kg.umls_rrf import load_umls


@pytest.fixture(scope="module")
def umls(kg_data: Path):
    return load_umls(kg_data / "umls")


def test_concepts_names_types_and_mesh(umls) -> None:
    cardiomegaly = umls.concepts["UMLS:C0018800"]
    assert cardiomegaly.name == "Cardiomegaly"
    assert cardiomegaly.semantic_type == DISEASE
    assert {"Cardiac Enlargement", "enlarged heart"} <= set(cardiomegaly.synonyms)
    assert "Cardiomegalia" not in cardiomegaly.synonyms  # Spanish atom skipped
    assert cardiomegaly.xrefs == ("MESH:D006332",)
    assert umls.concepts["UMLS:C0032227"].semantic_type == FINDING  # T046 pathologic function
    assert umls.concepts["UMLS:C0024109"].semantic_type == ANATOMY
    assert "Pneumothoraces" not in umls.concepts["UMLS:C0032326"].synonyms  # suppressed atom
    assert "Lobar Pneumonia" in umls.concepts["UMLS:C0032300"].synonyms  # "Pneumonia, Lobar" reordered


def test_qualifiers_are_not_loaded_by_default(umls) -> None:
    assert "UMLS:C0205090" not in umls.concepts  # "Right", T082 spatial concept
    assert len(umls.concepts) == 10


def test_relation_directions(umls) -> None:
    triples = {(r.subject, r.relation, r.object) for r in umls.relations}
    assert ("UMLS:C0018800", IS_A, "UMLS:C0018799") in triples  # PAR and CHD rows, one edge
    assert ("UMLS:C0032300", IS_A, "UMLS:C0032285") in triples  # lobar pneumonia is_a pneumonia
    assert ("UMLS:C0225706", PART_OF, "UMLS:C0024109") in triples  # right lung part_of lung
    assert ("UMLS:C0018800", "has_finding_site", "UMLS:C0018787") in triples
    assert not any(r.subject == "UMLS:C0032326" for r in umls.relations)  # suppressed RB, SIB ignored
    assert len([t for t in triples if t[1] == IS_A]) == 2


def test_merge_with_doid_through_cui(small_graph) -> None:
    copd = small_graph.concept("UMLS:C0024117")  # UMLS name "Chronic Obstructive Airway Disease"
    assert copd.id == "DOID:3083"
    assert {"doid", "umls"} <= set(copd.sources)
    assert "chronic obstructive airway disease" in {s.casefold() for s in copd.synonyms}
    heart_disease = small_graph.concept("DOID:114")
    assert "umls" in heart_disease.sources  # C0018799 Heart Diseases via DOID's CUI xref
    assert [p.id for p in small_graph.parents("cardiomegaly")] == ["DOID:114"]


def test_merge_through_mesh_only(tmp_path: Path, kg_data: Path) -> None:
    obo = tmp_path / "mini.obo"
    obo.write_text(
        "format-version: 1.2\n\n[Term]\nid: TEST:1\nname: heart hypertrophy of the test\nxref: MESH:D006332\n",
        encoding="utf-8",
    )
    graph = build_graph(GraphSources(doid=obo, umls_dir=kg_data / "umls", use_curated=False))
    merged = graph.concept("UMLS:C0018800")
    assert merged.id == "TEST:1"
    assert set(merged.sources) == {"doid", "umls"}
    assert graph.concept("heart hypertrophy of the test") == graph.concept("enlarged heart")


def test_wrong_field_count_names_file_and_line(tmp_path: Path, kg_data: Path) -> None:
    for name in ("MRCONSO.RRF", "MRREL.RRF", "MRSTY.RRF"):
        (tmp_path / name).write_bytes((kg_data / "umls" / name).read_bytes())
    (tmp_path / "MRSTY.RRF").write_text("C0018800|T047|B2.2.1.2.1|\n", encoding="utf-8")
    with pytest.raises(OntologyFormatError, match=r"MRSTY.RRF:1: expected 6 '\|'-separated fields, got 3"):
        load_umls(tmp_path)
    (tmp_path / "MRREL.RRF").unlink()
    with pytest.raises(OntologyFormatError, match="missing MRREL.RRF"):
        load_umls(tmp_path)
