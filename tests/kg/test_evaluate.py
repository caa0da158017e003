"""Linking scores against IU-style Problems terms."""

from __future__ import annotations

from kg.evaluate import linking_scores, map_problem_terms


def test_problem_terms_map_through_names_inverted_headings_and_the_table(small_graph) -> None:
    mapping = map_problem_terms(
        small_graph, ["Pneumothorax", "Hernia, Hiatal", "Cardiomegaly", "Lung", "normal", "Unknown Thing"]
    )
    assert mapping["Pneumothorax"] == "DOID:1673"
    assert mapping["Hernia, Hiatal"] == "DOID:12642"
    assert mapping["Cardiomegaly"] == small_graph.concept("cardiomegaly").id
    assert mapping["Lung"] is None  # anatomy is not scored
    assert mapping["Unknown Thing"] is None
    assert "normal" not in mapping


def test_linking_scores(small_graph, linker) -> None:
    reports = [
        (
            "Enlarged heart. No pneumothorax.",
            ["Cardiomegaly"],
        ),  # TP cardiomegaly; negated pneumothorax ignored
        ("Small left pneumothorax.", ["Pneumothorax", "Hernia, Hiatal"]),  # TP + FN
        ("Possible pneumothorax. Hiatal hernia.", ["normal"]),  # uncertain ignored, FP hernia
        ("No acute disease.", ["normal"]),
    ]
    scores = linking_scores(small_graph, linker, reports)
    assert (scores["tp"], scores["fp"], scores["fn"]) == (2, 1, 1)
    assert scores["precision"] == round(2 / 3, 4)
    assert scores["recall"] == round(2 / 3, 4)
    assert scores["per_term"]["Hernia, Hiatal"] == {"support": 1, "fn": 1}
    assert scores["reports"] == 4
