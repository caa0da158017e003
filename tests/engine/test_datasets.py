"""Dataset loaders: shared folders load with the README counts, miniature copies load, bad formats fail clearly."""

from __future__ import annotations

import csv
import json
import shutil
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from engine import datasets
from engine.datasets.base import LoadResult
from engine.datasets.vocab import (
    BODY_PARTS,
    MODALITIES,
    PLANES,
    normalise_body_part,
    normalise_modality,
    normalise_plane,
    split_from_name,
)
from engine.errors import DatasetFormatError, UnknownDatasetError

FOLDERS = {"vqa-rad": "vqa-rad", "slake": "slake", "medpix": "medpix-2.0", "iu-xray": "iu-xray"}

# Shared values that map to None on purpose: organ systems / placeholders, not regions or modalities.
NONE_BODY_PARTS = {
    "Musculoskeletal", "Vascular", "Generalized", "Endocrine", "Hematopoietic", "Pathology",
    "Nerve, peripheral", "Bethesda, MD", "Left Blank", "Spine and Muscles",
}  # fmt: skip
NONE_MODALITIES = {"Drawing"}
NONE_PLANES = {
    "Multiple or Montage", "Other View (see caption)", "NOS - Not specified", "Photograph",
    "Gross Pathology", "Drawing",
}  # fmt: skip


def read_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def write_json(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data), encoding="utf-8")


@pytest.fixture(scope="session")
def shared_results(shared_data: Path) -> dict[str, LoadResult]:
    return {name: datasets.load_with_report(name, shared_data / folder) for name, folder in FOLDERS.items()}


# --- registry -------------------------------------------------------------------------------------


def test_names_come_from_the_registry() -> None:
    assert datasets.names() == ["dicom", "folder", "iu-xray", "medpix", "slake", "vqa-rad"]


def test_unknown_dataset_lists_the_names(tmp_path: Path) -> None:
    with pytest.raises(UnknownDatasetError, match=r"'nope'.*vqa-rad"):
        datasets.load("nope", tmp_path)


def test_missing_folder_is_a_format_error(tmp_path: Path) -> None:
    with pytest.raises(DatasetFormatError, match="does not exist"):
        datasets.load("vqa-rad", tmp_path / "absent")


# --- shared folders -------------------------------------------------------------------------------


def test_shared_vqa_rad(shared_results: dict[str, LoadResult]) -> None:
    records = shared_results["vqa-rad"].records
    assert len(records) == 315 and sum(len(r.qa) for r in records) == 3064
    by_id = {r.id: r for r in records}
    assert by_id["vqa-rad:synpic35356"].kind == "image" and not by_id["vqa-rad:synpic35356"].qa
    first = by_id["vqa-rad:synpic54610"]
    assert (first.kind, first.body_part, first.split, first.modality) == ("image+text", "head", "train", "MR")
    assert {qa.answer_type for r in records for qa in r.qa} == {"CLOSED", "OPEN"}
    assert all(Path(r.image_path).is_file() for r in records)


def test_shared_slake(shared_results: dict[str, LoadResult]) -> None:
    result = shared_results["slake"]
    assert len(result.records) == 545  # every image on disk; xmlab0 (10 validation QA) is missing
    assert [s.id for s in result.skipped] == ["slake:xmlab0"]
    assert sum(len(r.qa) for r in result.records) == 4919 + 1053 - 10
    assert Counter(r.split for r in result.records) == {"train": 450, "validation": 95}
    first = next(r for r in result.records if r.id == "slake:xmlab1")
    assert first.caption == "MRI of the abdomen showing liver"
    assert (first.modality, first.body_part) == ("MR", "abdomen")
    assert first.extra["boxes"] == [{"label": "Liver", "box": [54.0, 106.0, 30.0, 31.0]}]
    kvqa = [qa for r in result.records for qa in r.qa if qa.extra.get("base_type") == "kvqa"]
    assert kvqa and all("triple" in qa.extra for qa in kvqa)


def test_shared_medpix(shared_results: dict[str, LoadResult]) -> None:
    result = shared_results["medpix"]
    kinds = Counter(r.kind for r in result.records)
    assert kinds == {"report": 602, "image+text": 197}
    assert len(result.skipped) == 1850 - 197  # train-split images are not shipped
    cases = {r.id: r for r in result.records if r.kind == "report"}
    assert Counter(r.split for r in cases.values()) == {"train": 535, "validation": 67}
    case = cases["medpix:MPX1009"]
    assert (case.diagnosis, case.modality, case.body_part) == ("Bladder Diverticulum", "CT", "abdomen")
    assert case.history.startswith("73-year-old male") and "prostate is enlarged" in case.caption
    images = [r for r in result.records if r.kind == "image+text"]
    assert all(r.split == "validation" and r.extra["case_id"] in r.id and r.findings for r in images)
    assert all(Path(r.image_path).is_file() for r in images)


def test_shared_iu_xray(shared_results: dict[str, LoadResult]) -> None:
    records = shared_results["iu-xray"].records
    assert len(records) == 3441
    assert Counter(r.split for r in records) == {"train": 1850, "validation": 264, "test": 538, None: 789}
    by_id = {r.id: r for r in records}
    study = by_id["iu-xray:CXR2384"]
    assert (study.kind, study.modality, study.body_part, study.image_path) == ("report", "XR", "chest", None)
    assert by_id["iu-xray:CXR1"].labels == ("normal",) and "XXXX" in by_id["iu-xray:CXR1"].findings
    assert not any("No Indexing" in r.labels for r in records)
    assert by_id["iu-xray:CXR2"].extra["mesh"] == ["Cardiomegaly/borderline", "Pulmonary Artery/enlarged"]


@pytest.mark.parametrize("name", sorted(FOLDERS))
def test_ids_unique_sorted_and_stable(
    name: str, shared_data: Path, shared_results: dict[str, LoadResult]
) -> None:
    first = shared_results[name].records
    ids = [r.id for r in first]
    assert len(set(ids)) == len(ids) and all(i.startswith(f"{name}:") for i in ids)
    assert tuple(datasets.load(name, shared_data / FOLDERS[name])) == first


# --- vocabulary -----------------------------------------------------------------------------------


def shared_vocabulary(shared_data: Path) -> dict[str, set[str]]:
    """Every raw modality / body part / plane value the shared folders hold."""
    vqa = read_json(shared_data / "vqa-rad" / "trainset.json")
    slake = [q for f in ("train_en.json", "validate_en.json") for q in read_json(shared_data / "slake" / f)]
    medpix = read_json(shared_data / "medpix-2.0" / "Descriptions.json")
    return {
        "modality": {q["modality"] for q in slake}
        | {d["Type"] for d in medpix}
        | {d["Description"]["Modality"] for d in medpix},
        "body_part": {q["image_organ"] for q in vqa}
        | {q["location"] for q in slake}
        | {d["Location"] for d in medpix}
        | {d["Location Category"] for d in medpix},
        "plane": {d["Description"]["Plane"] for d in medpix if d["Description"]["Plane"]},
    }


def test_every_shared_value_normalises(shared_data: Path) -> None:
    vocabulary = shared_vocabulary(shared_data)
    checks = [
        ("modality", normalise_modality, MODALITIES, NONE_MODALITIES),
        ("body_part", normalise_body_part, BODY_PARTS, NONE_BODY_PARTS),
        ("plane", normalise_plane, PLANES, NONE_PLANES),
    ]
    for field, normalise, known, expected_none in checks:
        mapped = {value: normalise(value) for value in vocabulary[field]}
        assert {v for v, m in mapped.items() if m is None} == expected_none, field
        assert {m for m in mapped.values() if m is not None} <= set(known), field


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("CT - noncontrast", "CT"), ("MRI", "MR"), ("MR - T2 weighted", "MR"), ("X-Ray", "XR"), ("x-ray", "XR"),
     ("Plain film", "XR"), ("CR", "XR"), ("DX", "XR"), ("CTA - CT Angiography", "CT"), ("PET-CT", "PET"),
     ("Ultrasound", "US"), ("Mammogram", "MG"), ("Fluoroscopy", "FL"), ("Angiogram", "ANGIO"),
     ("bone scintigraphy", "NM"), ("FLAIR", "MR"), ("", None), (None, None), ("yes", None)],
)  # fmt: skip
def test_normalise_modality(raw: str | None, expected: str | None) -> None:
    assert normalise_modality(raw) == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("HEAD", "head"), ("ABD", "abdomen"), ("Brain_Tissue", "head"), ("Pelvic Cavity", "pelvis"), ("Neck", "neck"),
     ("Lung", "chest"), ("Cardiopulmonary", "chest"), ("Genitourinary", "abdomen"), ("Brain and Neuro", "head"),
     ("cervical spine", "spine"), ("Knee", "lower limb"), ("shoulder", "upper limb"), ("breast", "breast"),
     ("upper limb", "upper limb"), ("Generalized", None), ("whole body", None), (None, None)],
)  # fmt: skip
def test_normalise_body_part(raw: str | None, expected: str | None) -> None:
    assert normalise_body_part(raw) == expected


def test_split_names() -> None:
    names = ["trainset", "testset", "train_en", "validate_en", "val", "dev", "test", "kg"]
    assert [split_from_name(n) for n in names] == [
        "train", "test", "train", "validation", "validation", "validation", "test", None
    ]  # fmt: skip


# --- miniature copies -----------------------------------------------------------------------------


@pytest.fixture
def mini_vqa_rad(tmp_path: Path, shared_data: Path) -> Path:
    """3 real images and their QA, renamed as an official test split."""
    source = shared_data / "vqa-rad"
    qa = read_json(source / "trainset.json")
    names = sorted({item["image_name"] for item in qa})[:3]
    folder = tmp_path / "vqa"
    (folder / "images").mkdir(parents=True)
    for name in names:
        shutil.copy(source / "images" / name, folder / "images" / name)
    write_json(folder / "testset.json", [item for item in qa if item["image_name"] in names])
    return folder


def test_mini_vqa_rad_test_split(mini_vqa_rad: Path) -> None:
    records = datasets.load("vqa-rad", mini_vqa_rad)
    assert len(records) == 3 and {r.split for r in records} == {"test"}
    assert all(qa.extra["split"] == "test" for r in records for qa in r.qa)


def test_mini_vqa_rad_missing_image_and_split_filter(mini_vqa_rad: Path) -> None:
    qa = read_json(mini_vqa_rad / "testset.json")
    write_json(mini_vqa_rad / "trainset.json", [dict(qa[0], image_name="synpic0.jpg", qid=1, answer=7)])
    result = datasets.load_with_report("vqa-rad", mini_vqa_rad)
    assert [s.id for s in result.skipped] == ["vqa-rad:synpic0"] and len(result.records) == 3
    only_train = datasets.load_with_report("vqa-rad", mini_vqa_rad, splits=["train"])
    assert {r.kind for r in only_train.records} == {"image"}  # test QA left out, images kept


def test_mini_slake_with_test_split(tmp_path: Path, shared_data: Path) -> None:
    source = shared_data / "slake"
    folder = tmp_path / "slake"
    train = [q for q in read_json(source / "train_en.json") if q["img_name"] in {"xmlab1/source.jpg"}]
    test = [dict(q, img_name="xmlab2/source.jpg", img_id=2, qid=q["qid"] + 90000) for q in train[:3]]
    zh = dict(train[0], q_lang="zh", qid=99999)
    write_json(folder / "train_en.json", train + [zh])
    write_json(folder / "test.json", test)
    for name in ("xmlab1", "xmlab2"):
        shutil.copytree(source / "imgs" / "xmlab1", folder / "imgs" / name)
    records = datasets.load("slake", folder)
    assert [r.id for r in datasets.load("slake", folder, splits=["test"])] == ["slake:xmlab2"]
    assert [(r.id, r.split, len(r.qa)) for r in records] == [
        ("slake:xmlab1", "train", len(train)), ("slake:xmlab2", "test", 3)
    ]  # fmt: skip


def test_mini_medpix_and_iu_xray(tmp_path: Path, shared_data: Path) -> None:
    source = shared_data / "medpix-2.0"
    cases = read_json(source / "Case_topic.json")[:2]
    ids = {c["U_id"] for c in cases}
    folder = tmp_path / "medpix"
    write_json(folder / "Case_topic.json", cases)
    write_json(
        folder / "Descriptions.json", [d for d in read_json(source / "Descriptions.json") if d["U_id"] in ids]
    )
    records = datasets.load("medpix", folder)  # no uid_list.json, no images/
    assert [r.kind for r in records] == ["report", "report"] and {r.split for r in records} == {None}

    iu = tmp_path / "iu"
    iu.mkdir()
    lines = (shared_data / "iu-xray" / "indiana_reports.csv").read_text(encoding="utf-8").splitlines()
    (iu / "indiana_reports.csv").write_text("\n".join(lines[:4]) + "\n", encoding="utf-8")
    assert [r.id for r in datasets.load("iu-xray", iu)] == ["iu-xray:CXR1", "iu-xray:CXR2", "iu-xray:CXR3"]


# --- wrong formats --------------------------------------------------------------------------------


def test_vqa_rad_without_qa_file(mini_vqa_rad: Path) -> None:
    (mini_vqa_rad / "testset.json").unlink()
    with pytest.raises(DatasetFormatError, match="trainset.json"):
        datasets.load("vqa-rad", mini_vqa_rad)


def test_invalid_json_names_file_and_line(mini_vqa_rad: Path) -> None:
    (mini_vqa_rad / "testset.json").write_text('[\n {"qid": 1,\n', encoding="utf-8")
    with pytest.raises(DatasetFormatError, match=r"testset\.json.*line 3"):
        datasets.load("vqa-rad", mini_vqa_rad)


def test_missing_field_names_record(mini_vqa_rad: Path) -> None:
    qa = read_json(mini_vqa_rad / "testset.json")
    del qa[1]["question"]
    write_json(mini_vqa_rad / "testset.json", qa)
    with pytest.raises(
        DatasetFormatError, match=rf"testset\.json.*record 1 \(qid {qa[1]['qid']}\).*question"
    ):
        datasets.load("vqa-rad", mini_vqa_rad)


@pytest.mark.parametrize(
    ("name", "files", "message"),
    [("medpix", {"Case_topic.json": []}, "Descriptions.json"), ("slake", {"imgs/.keep": ""}, "train_en.json"),
     ("iu-xray", {"indiana_projections.csv": ""}, "indiana_reports.csv"),
     ("iu-xray", {"indiana_reports.csv": "uid,findings\n1,x\n"}, r"missing column.*impression"),
     ("medpix", {"Case_topic.json": [{"U_id": "MPX1"}], "Descriptions.json": []}, r"record 0 \(U_id MPX1\).*Case")],
)  # fmt: skip
def test_missing_file_or_field(tmp_path: Path, name: str, files: dict[str, Any], message: str) -> None:
    for relative, content in files.items():
        target = tmp_path / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(content if isinstance(content, str) else json.dumps(content), encoding="utf-8")
    with pytest.raises(DatasetFormatError, match=message):
        datasets.load(name, tmp_path)


# --- folder ---------------------------------------------------------------------------------------


@pytest.fixture
def image_folder(tmp_path: Path) -> Path:
    """Three tiny PNG/JPEG images (one nested), a hidden image and a non-image file."""
    folder = tmp_path / "scans"
    for relative in ("a.png", "sub/b.JPG", "sub/c.png", ".hidden/d.png"):
        (folder / relative).parent.mkdir(parents=True, exist_ok=True)
        Image.new("L", (4, 4)).save(folder / relative, format="JPEG" if relative.endswith("JPG") else "PNG")
    (folder / "notes.txt").write_text("not an image", encoding="utf-8")
    return folder


def test_folder_without_sidecar(image_folder: Path) -> None:
    records = datasets.load("folder", image_folder)
    assert [r.id for r in records] == [
        "folder:scans/a.png",
        "folder:scans/sub/b.JPG",
        "folder:scans/sub/c.png",
    ]
    assert {r.kind for r in records} == {"image"}


def test_folder_with_csv_sidecar(image_folder: Path) -> None:
    with (image_folder / "metadata.csv").open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["file_name", "caption", "modality", "body_part", "labels", "split", "site"])
        writer.writerow(
            ["a.png", "Left lower lobe nodule.", "CT - noncontrast", "Chest", "nodule;mass", "val", "A"]
        )
        writer.writerow(["sub/missing.png", "gone", "", "", "", "", ""])
    result = datasets.load_with_report("folder", image_folder)
    first = result.records[0]
    assert (first.kind, first.caption, first.modality, first.body_part) == (
        "image+text",
        "Left lower lobe nodule.",
        "CT",
        "chest",
    )
    assert (first.labels, first.split, first.extra) == (("nodule", "mass"), "validation", {"site": "A"})
    assert [s.id for s in result.skipped] == ["folder:scans/sub/missing.png"]


def test_folder_with_jsonl_sidecar(image_folder: Path) -> None:
    rows = [
        {
            "file_name": "sub/c.png",
            "findings": "Normal.",
            "labels": ["normal"],
            "modality": "Sketch",
            "age": 40,
        }
    ]
    (image_folder / "metadata.jsonl").write_text(
        "\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8"
    )
    record = datasets.load("folder", image_folder)[2]
    assert (record.kind, record.findings, record.labels, record.modality) == (
        "image+text",
        "Normal.",
        ("normal",),
        None,
    )
    assert record.extra == {"age": 40, "modality_text": "Sketch"}


@pytest.mark.parametrize(
    ("sidecar", "content", "message"),
    [("metadata.jsonl", '{"file_name": "a.png"}\n{"file_name": \n', r"metadata\.jsonl.*line 2"),
     ("metadata.csv", "name,caption\na.png,x\n", r"metadata\.csv.*file_name"),
     ("metadata.jsonl", '{"caption": "x"}\n', r"metadata\.jsonl.*line 1.*file_name"),
     ("metadata.csv", "file_name\na.png\na.png\n", r"metadata\.csv.*line 3.*repeats")],
)  # fmt: skip
def test_folder_bad_sidecar(image_folder: Path, sidecar: str, content: str, message: str) -> None:
    (image_folder / sidecar).write_text(content, encoding="utf-8")
    with pytest.raises(DatasetFormatError, match=message):
        datasets.load("folder", image_folder)


def test_folder_with_no_images(tmp_path: Path) -> None:
    (tmp_path / "readme.txt").write_text("x", encoding="utf-8")
    with pytest.raises(DatasetFormatError, match="no image files"):
        datasets.load("folder", tmp_path)
