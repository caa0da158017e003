"""Linker: dictionary matching (longest match, plurals, hyphens, XXXX, acronyms) and NegEx-style polarity.

Sentences marked "IU" are taken verbatim from IU X-ray reports (shared/data/iu-xray).
"""

from __future__ import annotations

import pytest

from kg import Linker, Mention
from kg.negation import sentence_spans


def _polarities(linker: Linker, text: str) -> dict[str, str]:
    return {m.name: m.polarity for m in linker.link(text)}


def test_mention_fields_and_offsets(linker: Linker) -> None:
    text = "Stable exam. Small left pleural effusion."
    [mention] = [m for m in linker.link(text) if m.name == "pleural effusion"]
    assert isinstance(mention, Mention)
    assert text[mention.start : mention.end] == mention.text == "pleural effusion"
    assert mention.concept_id == "RID34539"
    assert text[mention.sentence_start : mention.sentence_end] == "Small left pleural effusion."
    assert (mention.negated, mention.uncertain, mention.polarity) == (False, False, "present")


def test_longest_match_wins(linker: Linker) -> None:
    names = [m.name for m in linker.link("There is a calcified granuloma and a pleural effusion.")]
    assert names == ["calcified granuloma", "pleural effusion"]  # not "granuloma", not "effusion"


@pytest.mark.parametrize(
    ("text", "name"),
    [
        ("Bilateral pleural effusions.", "pleural effusion"),
        ("No pneumothoraces.", "pneumothorax"),
        ("Scattered opacities.", "opacity"),
        ("PLEURAL EFFUSION", "pleural effusion"),
        ("pleural-effusion", "pleural effusion"),
        ("Hiatal XXXX hernia.", "hiatus hernia"),  # de-identification placeholder inside a name
        ("Enlarged heart.", "Cardiomegaly"),  # curated lay synonym (UMLS name in this graph)
        ("The heart is mildly enlarged.", "Cardiomegaly"),  # predicative form of "enlarged heart"
        ("fluid around the lungs", "pleural effusion"),
        ("COPD", "chronic obstructive pulmonary disease"),
    ],
)
def test_normalisation(linker: Linker, text: str, name: str) -> None:
    assert name in [m.name for m in linker.link(text)]


def test_placeholders_and_acronyms_do_not_make_mentions(linker: Linker) -> None:
    assert linker.link("XXXX XXXX XXXX") == []
    assert "chronic obstructive pulmonary disease" not in [m.name for m in linker.link("a cold day, copd?")]
    assert [m.name for m in linker.link("The heart is not enlarged.")] == ["heart"]


def test_qualifiers_are_not_linked(linker: Linker) -> None:
    assert [m.name for m in linker.link("Normal left margin.")] == []


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # pre-negation triggers
        ("No pneumothorax.", {"pneumothorax": "negated"}),
        ("There is no evidence of pneumothorax.", {"pneumothorax": "negated"}),  # IU
        (
            "Negative for pneumothorax or pleural effusion.",
            {"pneumothorax": "negated", "pleural effusion": "negated"},
        ),
        ("The lungs are free of pneumothorax.", {"lung": "present", "pneumothorax": "negated"}),
        ("Heart size normal without pleural effusion.", {"heart": "present", "pleural effusion": "negated"}),
        ("There are no XXXX of a pleural effusion.", {"pleural effusion": "negated"}),  # IU, XXXX skipped
        # post-negation triggers
        ("Pneumothorax is not seen.", {"pneumothorax": "negated"}),
        ("Pleural effusions are absent.", {"pleural effusion": "negated"}),
        ("The previously seen opacity has resolved.", {"opacity": "negated"}),
        # pseudo-negation
        ("No change in the pleural effusion.", {"pleural effusion": "present"}),
        ("No increase in atelectasis.", {"atelectasis": "present"}),
        # scope ends at "but", "however" and sentence boundaries
        (
            "No pneumothorax but a small pleural effusion.",
            {"pneumothorax": "negated", "pleural effusion": "present"},
        ),
        (
            "No pneumothorax; however, atelectasis is seen.",
            {"pneumothorax": "negated", "atelectasis": "present"},
        ),
        ("No pneumothorax. Small left effusion.", {"pneumothorax": "negated", "effusion": "present"}),
        # coordinated lists
        ("No pneumothorax or pleural effusion.", {"pneumothorax": "negated", "pleural effusion": "negated"}),
        (
            "No focal consolidation, pleural effusion, or pneumothorax.",  # IU
            {"consolidation": "negated", "pleural effusion": "negated", "pneumothorax": "negated"},
        ),
        (
            "There is no pneumothorax or pleural effusion. Calcified granuloma.",
            {"pneumothorax": "negated", "pleural effusion": "negated", "calcified granuloma": "present"},
        ),
    ],
)
def test_negation(linker: Linker, text: str, expected: dict[str, str]) -> None:
    assert _polarities(linker, text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Possible small right pleural effusion.", {"pleural effusion": "uncertain"}),
        ("Streaky opacity may represent atelectasis.", {"opacity": "present", "atelectasis": "uncertain"}),
        ("A small pneumothorax cannot be excluded.", {"pneumothorax": "uncertain"}),
        ("Findings suggestive of pulmonary edema.", {"pulmonary edema": "uncertain"}),
        ("Atelectasis versus consolidation.", {"atelectasis": "uncertain", "consolidation": "uncertain"}),
        (
            "Possible small pleural effusion but no pneumothorax.",
            {"pleural effusion": "uncertain", "pneumothorax": "negated"},
        ),
        ("Age-indeterminate compression fracture.", {"fracture": "present"}),  # pseudo: not hedging existence
    ],
)
def test_uncertainty(linker: Linker, text: str, expected: dict[str, str]) -> None:
    assert _polarities(linker, text) == expected


def test_real_iu_report(linker: Linker) -> None:
    report = (
        "The cardiomediastinal silhouette is within normal limits for size and contour. The lungs are normally "
        "inflated without evidence of focal airspace disease, pleural effusion, or pneumothorax. Stable calcified "
        "granuloma within the right upper lung. No acute bone abnormality.. No acute cardiopulmonary process."
    )
    polarities = _polarities(linker, report)
    assert polarities["airspace disease"] == "negated"
    assert polarities["pleural effusion"] == "negated"
    assert polarities["pneumothorax"] == "negated"
    assert polarities["calcified granuloma"] == "present"


def test_sentence_spans() -> None:
    text = "Heart size 1.5 cm. No effusion vs. atelectasis!  Lungs clear"
    spans = [text[a:b] for a, b in sentence_spans(text)]
    assert spans == ["Heart size 1.5 cm.", "No effusion vs. atelectasis!", "Lungs clear"]


def test_semantic_type_filter(small_graph) -> None:
    findings_only = Linker(small_graph, semantic_types={"disease", "finding", "imaging_observation"})
    assert [m.name for m in findings_only.link("The heart and lungs. Pneumothorax.")] == ["pneumothorax"]
