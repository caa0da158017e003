"""OBO loader: the doid.obo slice, and malformed files failing with file and line."""

from __future__ import annotations

from pathlib import Path

import pytest

from kg.concepts import DISEASE, IS_A
from kg.errors import OntologyFormatError
from kg.obo import load_obo, normalize_xref


@pytest.fixture(scope="module")
def doid(kg_data: Path):
    return load_obo(kg_data / "doid_slice.obo")


def test_terms_names_and_definitions(doid) -> None:
    pneumothorax = doid.concepts["DOID:1673"]
    assert pneumothorax.name == "pneumothorax"
    assert pneumothorax.semantic_type == DISEASE
    assert pneumothorax.sources == ("doid",)
    assert pneumothorax.definition.startswith("A pleural disease")
    assert len(doid.concepts) == 40  # 41 stanzas, one obsolete


def test_only_exact_synonyms_are_kept(doid) -> None:
    copd = doid.concepts["DOID:3083"]
    assert "COPD" in copd.synonyms
    assert "chronic obstructive lung disease" in copd.synonyms
    assert "hiatal hernia" in doid.concepts["DOID:12642"].synonyms


def test_xrefs_are_normalised(doid) -> None:
    copd = doid.concepts["DOID:3083"]
    assert "UMLS:C0024117" in copd.xrefs
    assert "MESH:D029424" in copd.xrefs
    assert not any(x.startswith(("UMLS_CUI:", "SNOMEDCT_US_")) for x in copd.xrefs)
    assert normalize_xref("SNOMEDCT_US_2023_03_01:196103008") == "SNOMEDCT:196103008"


def test_is_a_relations_and_obsolete_terms(doid) -> None:
    parents = {r.object for r in doid.relations if r.subject == "DOID:1673" and r.relation == IS_A}
    assert parents == {"DOID:1532"}  # pneumothorax is_a pleural disease
    assert "DOID:13906" not in doid.concepts  # obsolete malignant pleural effusion
    assert all(r.object in doid.concepts for r in doid.relations)


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "bad.obo"
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("body", "line", "problem"),
    [
        ('[Term]\nid: X:1\nname: a\nsynonym: "unterminated EXACT []\n', 4, "quoted"),
        ("[Term]\nid: X:1\nname: a\nthis line has no tag\n", 4, "tag: value"),
        ("[Term]\nname: nameless\n\n[Term]\nid: X:2\nname: b\n", 1, "without 'id'"),
        ("[Term]\nid: X:1\nname: a\n\n[Term]\nid: X:1\nname: b\n", 5, "duplicate"),
        ("[Term\nid: X:1\n", 1, "stanza header"),
    ],
)
def test_malformed_obo_names_file_and_line(tmp_path: Path, body: str, line: int, problem: str) -> None:
    path = _write(tmp_path, "format-version: 1.2\n\n" + body)
    with pytest.raises(OntologyFormatError) as error:
        load_obo(path)
    message = str(error.value)
    assert f"{path}:{line + 2}" in message
    assert problem in message
    assert isinstance(error.value, ValueError)
