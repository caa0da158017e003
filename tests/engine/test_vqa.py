"""VQA: answer normalisation, image-grouped folds, the answer head with retrieval evidence and citations, and
`evaluate_vqa` on tiny real slices (MiniLM questions, a tiny trained clip tower for images)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from engine.encoders.images import ImagePreprocess
from engine.errors import QueryError
from engine.vqa import (
    VqaFeatures,
    VqaItem,
    closed_options,
    encode_features,
    evaluate_vqa,
    fit_vqa,
    grouped_folds,
    majority_answers,
    normalise_answer,
    train_answer_head,
    vqa_items,
)
from engine.vqa.evaluate import SYSTEMS


@pytest.fixture(scope="module")
def rad_items(shared_data: Path) -> list[VqaItem]:
    from engine.datasets import load

    return vqa_items(load("vqa-rad", shared_data / "vqa-rad"), "vqa-rad")


@pytest.fixture(scope="module")
def small_slice(rad_items: list[VqaItem]) -> list[VqaItem]:
    """Every question of the first 40 VQA-RAD images (about 400 questions)."""
    images = sorted({item.record_id for item in rad_items})[:40]
    return [item for item in rad_items if item.record_id in set(images)]


@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory, shared_data: Path, minilm):
    """A clip-space encoder trained for a few steps on 16 real shared images (32 px, 32-d)."""
    from engine.encoders import create
    from engine.training import ClipTrainConfig, load_shared_records, train_clip
    from engine.training.data import image_records

    records = [r for r in image_records(load_shared_records(shared_data)) if r.source != "medpix"][:16]
    config = ClipTrainConfig(
        image=ImagePreprocess(size=32), epochs=1, batch_size=4, dim=32, warmup_steps=1,
        max_seconds=None, log_every=1, threads=1,
    )  # fmt: skip
    folder = train_clip(
        records, tmp_path_factory.mktemp("models") / "clip", config, progress=False, text_encoder=minilm
    )
    return create(f"trained:{folder}")


@pytest.fixture(scope="module")
def slice_features(small_slice: list[VqaItem], minilm, tiny_clip) -> VqaFeatures:
    return encode_features(small_slice, minilm, {"clip": tiny_clip})


def test_normalise_answer_canonicalises_case_punctuation_articles_and_yes_no():
    assert normalise_answer(" Yes. ") == "yes"
    assert normalise_answer("NO") == "no"
    assert normalise_answer("The Left Lung!") == "left lung"
    assert normalise_answer("a  mass,  in the   liver") == "mass in liver"
    assert normalise_answer("right-sided") == "right sided"


def test_closed_options_reads_x_or_y_questions():
    assert closed_options("Is this a CT or MRI?") == ("ct", "mri")
    assert closed_options("Is the lesion on the left or right side?", {"left", "right"}) == ("left", "right")
    assert closed_options("Is there a fracture?") is None


def test_grouped_folds_never_share_an_image_and_cover_every_item(rad_items: list[VqaItem]):
    folds = grouped_folds(rad_items, n_folds=5, seed=0)
    assert len(folds) == 5
    tested = np.concatenate([test for _, test in folds])
    assert sorted(tested.tolist()) == list(range(len(rad_items)))
    for train, test in folds:
        assert not {rad_items[i].record_id for i in train} & {rad_items[i].record_id for i in test}
    again = grouped_folds(rad_items, n_folds=5, seed=0)
    assert all((a[1] == b[1]).all() for a, b in zip(folds, again, strict=True))
    with pytest.raises(QueryError):
        grouped_folds(rad_items[:2], n_folds=5)


def test_head_trains_on_a_real_slice_and_predicts_from_the_vocabulary(small_slice, slice_features):
    assert slice_features.question.shape == (len(small_slice), 384)
    assert slice_features.images["clip"].shape == (len(small_slice), 32)
    answers = [item.answer for item in small_slice]
    head = train_answer_head(slice_features.matrix(), answers)
    proba = head.predict_proba(slice_features.matrix()[:5])
    assert proba.shape == (5, len(head.vocabulary)) and np.allclose(proba.sum(axis=1), 1)
    assert set(head.vocabulary) <= set(answers)
    train, test = grouped_folds(small_slice, n_folds=4, seed=0)[0]
    model = fit_vqa([small_slice[i] for i in train], slice_features.subset(train), k=5)
    predictions = model.predict([small_slice[i] for i in test], slice_features.subset(test))
    vocabulary = {small_slice[i].answer for i in train}
    assert len(predictions) == len(test)
    for prediction, row in zip(predictions, test, strict=True):
        assert prediction.qid == small_slice[row].qid
        assert prediction.answer in vocabulary and 0.0 <= prediction.confidence <= 1.0 + 1e-9
        if small_slice[row].answer_type == "CLOSED" and closed_options(small_slice[row].question) is None:
            assert prediction.answer in {"yes", "no"}
    assert set(model.weights) == {"CLOSED", "OPEN"}


def test_citations_are_training_qids_of_neighbours(small_slice, slice_features):
    train, test = grouped_folds(small_slice, n_folds=4, seed=1)[0]
    train_items = [small_slice[i] for i in train]
    model = fit_vqa(train_items, slice_features.subset(train), k=5, weights={"CLOSED": 0.5, "OPEN": 0.5})
    by_qid = {item.qid: item for item in train_items}
    test_images = {small_slice[i].record_id for i in test}
    for prediction in model.predict([small_slice[i] for i in test], slice_features.subset(test)):
        assert 1 <= len(prediction.citations) <= 5
        for citation in prediction.citations:
            assert citation.qid in by_qid and citation.record_id == by_qid[citation.qid].record_id
            assert citation.record_id not in test_images
    no_retrieval = fit_vqa(train_items, slice_features.subset(train), use_retrieval=False)
    assert all(
        p.citations == ()
        for p in no_retrieval.predict([small_slice[test[0]]], slice_features.subset(test[:1]))
    )


def test_evaluate_on_a_tiny_slice_returns_every_system(small_slice, slice_features):
    results = evaluate_vqa({"vqa-rad": (small_slice, slice_features)}, n_folds=2, k=5)
    result = results["datasets"]["vqa-rad"]
    assert set(result["systems"]) == set(SYSTEMS) and results["systems"] == list(SYSTEMS)
    assert result["n_test"] == len(small_slice) and "grouped by image" in result["protocol"]
    for row in result["systems"].values():
        assert 0.0 <= row["closed"] <= 1.0 and 0.0 <= row["open"] <= 1.0
        assert row["n_closed"] + row["n_open"] == len(small_slice)
        overall = (row["closed"] * row["n_closed"] + row["open"] * row["n_open"]) / len(small_slice)
        assert row["overall"] == pytest.approx(overall)
    assert any("graph" in note.lower() for note in results["notes"])
    assert results["config"]["graph"] is False
    # without a graph the engine's system and its no-graph ablation answer alike
    assert result["systems"]["head+retrieval+graph"] == result["systems"]["ablation-no-graph"]
    assert result["examples"] and all(example["citations"] for example in result["examples"])
    for system, table in result["by_category"].items():  # per-category rows add up to the overall figure
        assert sum(row["n"] for row in table.values()) == len(small_slice)
        hits = sum(row["accuracy"] * row["n"] for row in table.values())
        assert hits / len(small_slice) == pytest.approx(result["systems"][system]["overall"])


def _item(qid: str, image: str, answer: str, answer_type: str, split: str = "train") -> VqaItem:
    return VqaItem(qid, image, f"/x/{image}.jpg", f"question {qid}?", answer, answer_type, split)


def test_majority_baseline_on_a_hand_checkable_case():
    train = [
        _item("1", "a", "yes", "CLOSED"),
        _item("2", "a", "no", "CLOSED"),
        _item("3", "b", "no", "CLOSED"),
        _item("4", "b", "liver", "OPEN"),
        _item("5", "c", "ct", "OPEN"),
        _item("6", "c", "ct", "OPEN"),
    ]
    assert majority_answers(train) == {"CLOSED": "no", "OPEN": "ct"}
    test = [
        _item("7", "d", "no", "CLOSED", "validation"),
        _item("8", "d", "yes", "CLOSED", "validation"),
        _item("9", "e", "ct", "OPEN", "validation"),
        _item("10", "e", "mri", "OPEN", "validation"),
    ]
    items = train + test
    rng = np.random.default_rng(0)
    features = VqaFeatures(rng.normal(size=(len(items), 8)).astype(np.float32))
    result = evaluate_vqa({"toy": (items, features)}, k=2)["datasets"]["toy"]
    assert result["protocol"] == "official train -> validation" and result["n_test"] == 4
    majority = result["systems"]["majority"]
    assert majority["closed"] == 0.5 and majority["open"] == 0.5 and majority["overall"] == 0.5
    # no category labels on these items: one "UNLABELLED" group holding every test question
    assert result["by_category"]["majority"] == {"UNLABELLED": {"accuracy": 0.5, "n": 4}}


def test_accuracy_per_category_counts_each_question_once():
    from dataclasses import replace

    from engine.vqa.evaluate import _by_category

    items = [
        replace(_item("1", "a", "yes", "CLOSED"), category="PRES"),
        replace(_item("2", "a", "no", "CLOSED"), category="PRES"),
        replace(_item("3", "b", "ct", "OPEN"), category="MODALITY"),
    ]
    table = _by_category(items, ["yes", "yes", "ct"])
    assert table == {"PRES": {"accuracy": 0.5, "n": 2}, "MODALITY": {"accuracy": 1.0, "n": 1}}
    assert list(table) == ["PRES", "MODALITY"]  # largest category first


def test_question_categories_come_from_each_datasets_own_labels(rad_items, shared_data: Path):
    from collections import Counter

    from engine.datasets import load
    from engine.vqa.data import question_category

    rad = Counter(item.category for item in rad_items)
    assert rad["PRES"] > rad["MODALITY"] > 0 and None not in rad
    assert all(c == c.upper() and "," not in c for c in rad)  # "PRES, ATTRIB" -> "PRES"
    slake = Counter(item.category for item in vqa_items(load("slake", shared_data / "slake"), "slake"))
    assert {"ORGAN", "KG", "MODALITY"} <= set(slake)
    assert question_category({"question_type": " pres, attrib"}) == "PRES"
    assert question_category({}) is None and question_category({"content_type": " "}) is None
