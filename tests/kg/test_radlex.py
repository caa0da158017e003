"""RadLex loader: semantic types from the branch a term sits in; qualifiers are not linkable."""

from __future__ import annotations

from pathlib import Path

import pytest

from kg.concepts import (
    ANATOMY,
    DEVICE,
    FINDING,
    IMAGING_OBSERVATION,
    LINKABLE_SEMANTIC_TYPES,
    MODALITY,
    OTHER,
    QUALIFIER,
)
from kg.errors import OntologyFormatError
from kg.radlex import load_radlex


@pytest.fixture(scope="module")
def radlex(kg_data: Path):
    return load_radlex(kg_data / "radlex_slice.csv")


@pytest.mark.parametrize(
    ("rid", "name", "semantic_type"),
    [
        ("RID34539", "pleural effusion", FINDING),
        ("RID5352", "pneumothorax", FINDING),
        ("RID28530", "opacity", IMAGING_OBSERVATION),
        ("RID3875", "nodule", IMAGING_OBSERVATION),
        ("RID1301", "lung", ANATOMY),
        ("RID5436", "pacemaker", DEVICE),
        ("RID10312", "magnetic resonance imaging", MODALITY),
        ("RID13173", "normal", QUALIFIER),
        ("RID5972", "margin", QUALIFIER),  # an imaging-observation sub-branch that only describes
        ("RID34785", "clinical finding", OTHER),  # branch roots are headings
    ],
)
def test_semantic_type_from_branch(radlex, rid: str, name: str, semantic_type: str) -> None:
    concept = radlex.concepts[rid]
    assert concept.name == name
    assert concept.semantic_type == semantic_type


def test_qualifiers_are_not_linkable(radlex) -> None:
    left = next(c for c in radlex.concepts.values() if c.name == "left")
    assert left.semantic_type == QUALIFIER
    assert QUALIFIER not in LINKABLE_SEMANTIC_TYPES


def test_tree_edges(radlex) -> None:
    parents = {r.subject: r.object for r in radlex.relations}
    assert parents["RID34539"] == "RID4872"  # pleural effusion is_a effusion
    assert "RID34785" not in parents  # its parent RID1 is not a row


def test_bad_rows_name_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "Radlex.csv"
    path.write_text("lung,RID1301,RID13419\nheart,RID1385\n", encoding="utf-8")
    with pytest.raises(OntologyFormatError, match=rf"{path}:2: expected 3 columns"):
        load_radlex(path)
    path.write_text("lung,RID1301,RID13419\nheart,1385,RID34892\n", encoding="utf-8")
    with pytest.raises(OntologyFormatError, match=rf"{path}:2: malformed RadLex id"):
        load_radlex(path)
