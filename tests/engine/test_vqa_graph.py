"""Graph facts for knowledge questions: question wording -> relation, entities of similar images -> facts from
the real knowledge graph (SLAKE attributes), checked against the SLAKE KG files read independently."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from engine.vqa.data import VqaItem, normalise_answer
from engine.vqa.graph_facts import GraphFacts, question_relation


def _kg_values(shared_data: Path, head: str, attribute: str) -> set[str]:
    """Values of (head, attribute) read straight from SLAKE's en_disease.csv / en_organ.csv."""
    values = set()
    for name in ("en_disease.csv", "en_organ.csv"):
        for line in (shared_data / "slake" / "kg" / name).read_text(encoding="utf-8").splitlines()[1:]:
            parts = line.split("#")
            if len(parts) == 3 and parts[0].strip().lower() == head.lower() and parts[1].strip() == attribute:
                values.add(normalise_answer(parts[2]))
    return values


@pytest.mark.parametrize(
    ("question", "relation"),
    [
        ("How to treat the disease located on the left of lung in this image?", "treatment"),
        ("What kind of symptoms will the disease on the lower right lung bring to the patient?", "symptom"),
        (
            "How to prevent the occurrence of the disease on the lower right chest in this image?",
            "prevention",
        ),
        ("What is the function of the main organ in this picture?", "function"),
        ("What can the organ with black color in this image be used for?", "function"),
        ("What is the effect of the center organ in this picture?", "effect"),
        ("Which organs/organ in the picture belong to the circulatory system?", "belong_to"),
        ("Which organs/organ is part of the respiratory system in this image?", "belong_to"),
        ("How much damage will be caused to the body taking such an image?", None),
        ("Is there a pleural effusion?", None),
        ("Which part of the body does this image belong to?", None),
    ],
)
def test_question_wording_maps_to_the_relation_asked(question: str, relation: str | None):
    found = question_relation(question)
    assert (found[0][0] if found else None) == relation


@pytest.fixture(scope="module")
def facts(knowledge) -> GraphFacts:
    return GraphFacts(
        knowledge.graph,
        {
            "r-pneumonia": ("Right Lung", "Pneumonia"),
            "r-liver": ("Liver", "Liver Cancer"),
            "r-heart": ("Heart", "Left Lung"),
        },
    )


def test_treatment_comes_from_the_disease_of_the_nearest_images(facts: GraphFacts, shared_data: Path):
    votes, used = facts.evidence("How to treat the disease in this image?", ["r-pneumonia"], [1.0])
    assert set(votes) == _kg_values(shared_data, "Pneumonia", "treatment")
    assert used and used[0].head.lower() == "pneumonia" and used[0].relation == "treatment"
    assert used[0].record_id == "r-pneumonia"
    # two neighbours: the heavier one's disease wins
    votes, _ = facts.evidence(
        "How to treat the disease in this image?", ["r-liver", "r-pneumonia"], [0.8, 0.2]
    )
    best = max(votes, key=votes.get)
    assert best in _kg_values(shared_data, "Liver Cancer", "treatment")
    assert sum(votes.values()) == pytest.approx(1.0)


def test_an_organ_named_in_the_question_narrows_the_diseases(facts: GraphFacts, shared_data: Path):
    question = "What kind of symptoms will the disease on the lower right lung bring to the patient?"
    votes, used = facts.evidence(question, ["r-liver", "r-pneumonia"], [0.9, 0.1])
    assert set(votes) == _kg_values(shared_data, "Pneumonia", "symptom")
    assert {f.head.lower() for f in used} == {"pneumonia"}


def test_organ_questions_use_organ_facts_and_systems(facts: GraphFacts, shared_data: Path):
    votes, _ = facts.evidence("What is the function of the main organ in this picture?", ["r-heart"], [1.0])
    assert set(votes) <= _kg_values(shared_data, "Heart", "function") | _kg_values(
        shared_data, "Lung", "function"
    )
    votes, used = facts.evidence(
        "Which organs/organ in the picture belong to the circulatory system?", ["r-heart"], [1.0]
    )
    assert max(votes, key=votes.get) == "heart" and used[0].relation == "belong_to"


def test_no_fact_for_questions_the_graph_cannot_answer(facts: GraphFacts):
    assert facts.evidence(
        "How much damage will be caused to the body taking such an image?", ["r-heart"], [1.0]
    ) == (
        {},
        [],
    )
    assert facts.evidence("How to treat the disease in this image?", ["unknown-record"], [1.0]) == ({}, [])


def test_vote_matrix_aligns_with_the_vocabulary(facts: GraphFacts, shared_data: Path):
    treatment = sorted(_kg_values(shared_data, "Pneumonia", "treatment"))
    vocabulary = ("yes", "no", *treatment)
    items = [
        VqaItem("q1", "", "", "How to treat the disease in this image?", "", "OPEN", "query"),
        VqaItem("q2", "", "", "Is this a CT?", "", "CLOSED", "query"),
    ]
    matrix, used = facts.vote_matrix(items, vocabulary, [["r-pneumonia"], ["r-pneumonia"]], np.ones((2, 1)))
    assert matrix.shape == (2, len(vocabulary))
    assert matrix[0, 2:].sum() == pytest.approx(1.0) and matrix[0, :2].sum() == 0
    assert not matrix[1].any() and used[1] == []


def test_from_items_collects_boxes_and_graph_answers(knowledge):
    items = [
        VqaItem(
            "a",
            "img1",
            "",
            "What diseases are included?",
            "pneumonia",
            "OPEN",
            "train",
            "Pneumonia",
            ("Heart",),
        ),
        VqaItem("b", "img1", "", "Is this a CT?", "no", "CLOSED", "train", "No"),
        VqaItem("c", "img2", "", "Which organ?", "liver", "OPEN", "train", "Liver"),
    ]
    built = GraphFacts.from_items(knowledge.graph, items)
    assert set(built.entities["img1"]) == {"Heart", "Pneumonia"}
    assert built.entities["img2"] == ("Liver",)
