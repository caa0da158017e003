"""Curated files shipped in kg/data parse, and malformed curated files fail with file and line."""

from __future__ import annotations

from pathlib import Path

import pytest

from kg.curated import DATA_DIR, STUB_PREFIX, load_curated
from kg.errors import OntologyFormatError


def test_shipped_files_load() -> None:
    data = load_curated()
    assert data.concepts["MEDSEARCH:cardiomegaly"].xrefs == ("UMLS:C0018800", "MESH:D006332")
    assert "enlarged heart" in data.concepts["MEDSEARCH:cardiomegaly"].synonyms
    stub = data.concepts[STUB_PREFIX + "RID34539"]
    assert stub.xrefs == ("RID34539",)
    assert "fluid around the lung" in (stub.name, *stub.synonyms)
    assert any(r.relation == "is_a" for r in data.relations)
    assert (DATA_DIR / "synonyms.tsv").is_file()


def test_bad_rows_name_file_and_line(tmp_path: Path) -> None:
    (tmp_path / "synonyms.tsv").write_text("# comment\nconcept\tsynonym\tnote\nRID1\n", encoding="utf-8")
    with pytest.raises(OntologyFormatError, match=r"synonyms.tsv:3: expected 3 tab-separated cells"):
        load_curated(tmp_path)
    (tmp_path / "synonyms.tsv").write_text("concept\tname\n", encoding="utf-8")
    with pytest.raises(OntologyFormatError, match=r"synonyms.tsv:1: expected header columns"):
        load_curated(tmp_path)
    (tmp_path / "synonyms.tsv").unlink()
    header = "id\tname\tsemantic_type\tparents\txrefs\tnote\n"
    (tmp_path / "concepts.tsv").write_text(header + "X:1\tthing\tgizmo\t\t\t\n", encoding="utf-8")
    with pytest.raises(OntologyFormatError, match=r"concepts.tsv:2: unknown semantic type 'gizmo'"):
        load_curated(tmp_path)
