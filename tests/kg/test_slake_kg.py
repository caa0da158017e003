"""SLAKE KG loader: disease/organ concepts, attribute relations, value nodes."""

from __future__ import annotations

from pathlib import Path

import pytest

from kg.concepts import ANATOMY, DISEASE, VALUE
from kg.errors import OntologyFormatError
from kg.slake_kg import load_slake_kg, slake_id, value_id


@pytest.fixture(scope="module")
def slake(kg_data: Path):
    return load_slake_kg(kg_data / "slake")


def test_diseases_organs_and_systems(slake) -> None:
    assert slake.concepts["SLAKE:lobar_pneumonia"].semantic_type == DISEASE
    assert slake.concepts["SLAKE:lung"].semantic_type == ANATOMY
    assert slake.concepts["SLAKE:respiratory_system"].semantic_type == ANATOMY
    assert slake.concepts["SLAKE:lobar_pneumonia"].synonyms == ("pneumococcal pneumonia",)
    assert slake.concepts["SLAKE:cardiomegaly"].definition == "increase of heart volume"


def test_attribute_relations(slake) -> None:
    triples = {(r.subject, r.relation, r.object) for r in slake.relations}
    assert ("SLAKE:lobar_pneumonia", "location", "SLAKE:lung") in triples
    assert ("SLAKE:lung", "belong_to", "SLAKE:respiratory_system") in triples
    symptom = value_id("chills, high fever, chest pain, cough, rusty sputum, nausea, vomiting")
    assert ("SLAKE:lobar_pneumonia", "symptom", symptom) in triples
    assert slake.concepts[symptom].semantic_type == VALUE


def test_related_surfaces_facts_for_knowledge_questions(small_graph) -> None:
    facts = dict(small_graph.related("Lobar Pneumonia", inverse=False))
    assert facts["symptom"].name == "chills, high fever, chest pain, cough, rusty sputum, nausea, vomiting"
    assert facts["treatment"].name == "antibiotic drug therapy"
    assert facts["location"].name == "lung"  # merged with RadLex "lung"
    members = {
        c.name for relation, c in small_graph.related("respiratory system") if relation == "has_member"
    }
    assert {"lung", "Trachea"} <= members


def test_ids_and_bad_rows(tmp_path: Path) -> None:
    assert slake_id("Drug-Induced Liver Disease") == "SLAKE:drug_induced_liver_disease"
    (tmp_path / "en_disease.csv").write_text("disease#attribute#value\nAsthma#symptom\n", encoding="utf-8")
    with pytest.raises(OntologyFormatError, match=r"en_disease.csv:2: expected 'head#attribute#value'"):
        load_slake_kg(tmp_path)
    with pytest.raises(OntologyFormatError, match="no SLAKE KG file"):
        load_slake_kg(tmp_path / "missing")
