"""DICOM loader and de-identification on pydicom's bundled test files with PHI that the tests set."""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path

import numpy as np
import pytest

pydicom = pytest.importorskip("pydicom")
from pydicom.data import get_testdata_file  # noqa: E402
from pydicom.datadict import tag_for_keyword  # noqa: E402

from engine.datasets import load_with_report  # noqa: E402
from engine.datasets.dicom import load_dicom, plane_from_orientation  # noqa: E402
from engine.deid import _EMPTY, _REMOVE, DESCRIPTORS, deidentify, remap_uid  # noqa: E402
from engine.errors import DatasetFormatError  # noqa: E402

SALT = "test-salt"
PHI = {
    "PatientName": "Doe^Jonathan",
    "PatientID": "MRN7731990",
    "PatientBirthDate": "19610417",
    "InstitutionName": "Mercywood General",
    "InstitutionAddress": "12 Elmstreet Road, Springfield",
    "ReferringPhysicianName": "Quackenbush^Hilda",
    "StudyDate": "20210305",
}
PHI_STRINGS = [
    "Doe",
    "Jonathan",
    "MRN7731990",
    "19610417",
    "Mercywood",
    "Elmstreet",
    "Quackenbush",
    "20210305",
]
PRIVATE_TEXT = "SecretPrivateNote"


def _with_phi(name: str, dest: Path, patient: str = "MRN7731990", **tags: object) -> tuple[Path, str]:
    """Copy a bundled file to `dest` with the PHI tags set; returns the path and its original SOPInstanceUID."""
    ds = pydicom.dcmread(get_testdata_file(name))
    defaults = {"SeriesDescription": "Axial chest Doe"}  # names the patient: must be dropped
    for keyword, value in {**PHI, "PatientID": patient, **defaults, **tags}.items():
        setattr(ds, keyword, value)
    block = ds.private_block(0x0011, "ACME PHI", create=True)
    block.add_new(0x01, "LO", PRIVATE_TEXT)
    dest.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(dest)
    return dest, str(ds.SOPInstanceUID)


@pytest.fixture
def archive(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    data = tmp_path / "Doe_Jonathan"  # a PHI-bearing folder name, as in real archives
    uids: dict[str, str] = {}
    for name, out in (
        ("CT_small.dcm", "study/ct.dcm"),
        ("MR_small.dcm", "study/mr.dcm"),
        ("rtdose.dcm", "dose/rtdose.dcm"),
    ):
        path, uids[name] = _with_phi(name, data / out)
        original = pydicom.dcmread(path)
        for keyword in ("StudyInstanceUID", "SeriesInstanceUID", "FrameOfReferenceUID"):
            if original.get(keyword):
                uids[f"{name}:{keyword}"] = str(original.get(keyword))
    return data, uids


def _all_text(records: object, out_dir: Path) -> str:
    text = json.dumps([dataclasses.asdict(r) for r in records])  # type: ignore[attr-defined]
    return text + "".join(p.read_bytes().decode("latin-1") for p in out_dir.glob("*.png"))


def test_deid_keywords_are_dicom_keywords() -> None:
    unknown = [k for k in _REMOVE | _EMPTY | DESCRIPTORS if tag_for_keyword(k) is None]
    assert not unknown


def test_load_has_no_phi_in_records_pngs_or_logs(
    archive: tuple[Path, dict[str, str]], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    data, uids = archive
    out = tmp_path / "derived"
    caplog.set_level(logging.DEBUG)
    result = load_with_report("dicom", data, out_dir=out, salt=SALT)
    assert len(result.records) == 3
    blob = (
        _all_text(result.records, out)
        + caplog.text
        + json.dumps([dataclasses.asdict(s) for s in result.skipped])
    )
    for phi in [*PHI_STRINGS, "2021-03-05", PRIVATE_TEXT, *uids.values(), "Doe_Jonathan"]:
        assert phi.lower() not in blob.lower(), phi
    for record in result.records:
        assert record.id.startswith("dicom:2.25.") and record.source == "dicom" and record.kind == "image"
        assert Path(record.image_path).parent == out.resolve()
        assert "series_description" not in record.extra
    ct = next(r for r in result.records if r.extra["modality_code"] == "CT")
    assert ct.modality == "CT" and ct.plane == "axial"
    assert ct.id == f"dicom:{remap_uid(uids['CT_small.dcm'], SALT)}"
    assert len({r.extra["study_date"] for r in result.records}) == 1  # one patient, one shift


def test_dates_shift_per_patient_and_uids_remap_consistently(tmp_path: Path) -> None:
    data = tmp_path / "data"
    _, ct_uid = _with_phi("CT_small.dcm", data / "a.dcm")
    _with_phi("MR_small.dcm", data / "b.dcm")
    _with_phi("JPEG2000.dcm", data / "c.dcm", patient="OTHER-1")  # may not decode: only dates matter
    pydicom_ds = pydicom.dcmread(data / "a.dcm")
    first = deidentify(pydicom_ds, salt=SALT)
    again = deidentify(pydicom_ds, salt=SALT)
    other_salt = deidentify(pydicom_ds, salt="another")
    assert first.SOPInstanceUID == again.SOPInstanceUID == remap_uid(ct_uid, SALT)
    assert first.SOPInstanceUID != other_salt.SOPInstanceUID
    assert first.file_meta.MediaStorageSOPInstanceUID == first.SOPInstanceUID
    assert first.SOPClassUID == pydicom_ds.SOPClassUID  # registered UIDs are kept
    assert first.PatientName in ("", None) and first.PatientBirthDate in ("", None)
    assert "InstitutionName" not in first and "InstitutionAddress" not in first
    assert not any(elem.tag.is_private for elem in first.iterall())
    assert first.PatientIdentityRemoved == "YES" and first.PatientID.startswith("anon-")

    shifted = {
        name: deidentify(pydicom.dcmread(data / name), salt=SALT).StudyDate
        for name in ("a.dcm", "b.dcm", "c.dcm")
    }
    assert shifted["a.dcm"] == shifted["b.dcm"] != PHI["StudyDate"]  # same patient, same shift
    assert shifted["c.dcm"] != shifted["a.dcm"]  # another patient, another shift
    fixed = deidentify(pydicom_ds, salt=SALT, date_shift_days=-10)
    assert fixed.StudyDate == "20210223"


def test_multiframe_middle_and_all(tmp_path: Path) -> None:
    data = tmp_path / "data"
    _with_phi("rtdose.dcm", data / "dose.dcm")
    middle = load_dicom(data, out_dir=tmp_path / "m", salt=SALT).records
    assert len(middle) == 1 and middle[0].extra["frame"] == 7 and middle[0].extra["frames"] == 15
    every = load_dicom(data, out_dir=tmp_path / "a", salt=SALT, frames="all").records
    assert len(every) == 15 and len({r.image_path for r in every}) == 15
    assert all("/frame-" in r.id for r in every)


def test_windowing_gives_non_constant_8bit_and_monochrome1_inverts(tmp_path: Path) -> None:
    from PIL import Image

    data = tmp_path / "data"
    _with_phi(
        "CT_small.dcm",
        data / "mono2.dcm",
        WindowCenter=40,
        WindowWidth=400,
        SeriesDescription="Axial abdomen",
    )
    _with_phi("CT_small.dcm", data / "mono1.dcm", PhotometricInterpretation="MONOCHROME1", WindowCenter=40,
              WindowWidth=400, SOPInstanceUID="1.2.3.4.5.6.7.8")  # fmt: skip
    records = load_dicom(data, out_dir=tmp_path / "out", salt=SALT).records
    assert len(records) == 2
    assert {r.extra.get("series_description") for r in records} == {"Axial abdomen", None}  # clean one kept
    by_uid = {r.id: np.asarray(Image.open(r.image_path)) for r in records}
    mono1 = by_uid[f"dicom:{remap_uid('1.2.3.4.5.6.7.8', SALT)}"]
    mono2 = next(v for k, v in by_uid.items() if not k.endswith(remap_uid("1.2.3.4.5.6.7.8", SALT)))
    assert mono2.dtype == np.uint8 and mono2.std() > 5 and len(np.unique(mono2)) > 10
    assert np.array_equal(mono1, 255 - mono2)


def test_bad_files_are_skipped_with_reasons(tmp_path: Path) -> None:
    data = tmp_path / "data"
    _with_phi("CT_small.dcm", data / "good.dcm")
    path, _ = _with_phi("MR_small.dcm", data / "truncated.dcm")
    path.write_bytes(path.read_bytes()[:-3000])
    (data / "notes.txt").write_text("Doe Jonathan MRN7731990")
    _with_phi("MR_small.dcm", data / "burned.dcm", BurnedInAnnotation="YES", SOPInstanceUID="1.2.9.9")
    result = load_dicom(data, out_dir=tmp_path / "out", salt=SALT)
    assert len(result.records) == 1
    reasons = sorted(s.reason for s in result.skipped)
    assert len(reasons) == 3
    assert any(r.startswith("not a DICOM") for r in reasons)
    assert any(r.startswith("malformed DICOM") for r in reasons)
    assert any(r.startswith("BurnedInAnnotation") for r in reasons)
    assert all(s.path.startswith("file #") for s in result.skipped)
    allowed = load_dicom(data, out_dir=tmp_path / "out2", salt=SALT, allow_burned_in=True)
    assert len(allowed.records) == 2


def test_folder_without_dicom_and_missing_out_dir(tmp_path: Path) -> None:
    data = tmp_path / "plain"
    data.mkdir()
    (data / "a.txt").write_text("no dicom here")
    with pytest.raises(DatasetFormatError, match="plain"):
        load_dicom(data, out_dir=tmp_path / "out", salt=SALT)
    with pytest.raises(DatasetFormatError, match="out_dir"):
        load_dicom(data, salt=SALT)


def test_plane_from_orientation() -> None:
    from pydicom.dataset import Dataset

    ds = Dataset()
    ds.ImageOrientationPatient = [0, 1, 0, 0, 0, -1]
    assert plane_from_orientation(ds) == "sagittal"
    ds.ImageOrientationPatient = [1, 0, 0, 0, 0, -1]
    assert plane_from_orientation(ds) == "coronal"
    ds.ImageOrientationPatient = [1, 0, 0, 0, 0.7071, 0.7071]
    assert plane_from_orientation(ds) == "oblique"


def test_cli_ingest_dicom_stores_no_phi_and_is_idempotent(
    archive: tuple[Path, dict[str, str]], tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch
) -> None:
    """`medsearch ingest dicom`: renderings and a 0600 salt under the home; SQLite holds no PHI; re-run adds 0."""
    import sqlite3
    import stat

    from ui.cli import main

    data, uids = archive
    home = tmp_path / "home"
    monkeypatch.setenv("MEDSEARCH_KG_ENABLED", "false")
    assert main(["--home", str(home), "ingest", "dicom", str(data), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["added"] == 3
    salt = home / "secrets" / "dicom_salt"
    assert stat.S_IMODE(salt.stat().st_mode) == 0o600
    pngs = list((home / "derived" / "dicom").rglob("*.png"))
    assert len(pngs) == 3 and not list(data.rglob("*.png"))  # the source folder is never written
    with sqlite3.connect(home / "collections" / "default" / "records.sqlite") as db:
        stored = json.dumps(db.execute("SELECT * FROM records").fetchall())
    for phi in [*PHI_STRINGS, PRIVATE_TEXT, *uids.values(), "Doe_Jonathan"]:
        assert phi.lower() not in stored.lower(), phi
    assert main(["--home", str(home), "ingest", "dicom", str(data), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["added"] == 0  # same salt -> same ids
