"""Training on a handful of real shared images: the split, the pairs, seeded runs, checkpoints and cards."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from engine.datasets.record import Record
from engine.encoders import create
from engine.encoders.images import ImagePreprocess
from engine.training import ClipTrainConfig, SslTrainConfig, clip_pairs, load_shared_records, validation_split
from engine.training.data import image_records, medpix_case_held_out, record_texts

TINY_IMAGE = ImagePreprocess(size=32)
SSL_CONFIG = SslTrainConfig(
    image=TINY_IMAGE,
    epochs=2,
    batch_size=8,
    local_size=16,
    warmup_steps=1,
    max_seconds=None,
    log_every=1,
    threads=1,
)


@pytest.fixture(scope="module")
def shared_records(shared_data: Path) -> list[Record]:
    return load_shared_records(shared_data)


@pytest.fixture(scope="module")
def tiny_records(shared_records: list[Record]) -> list[Record]:
    """A few images of each source: SLAKE train + validation, MedPix of held-out and kept cases, VQA-RAD."""
    images = image_records(shared_records)
    slake_train = [r for r in images if r.source == "slake" and r.split == "train"][:6]
    slake_validation = [r for r in images if r.source == "slake" and r.split == "validation"][:2]
    medpix = [r for r in images if r.source == "medpix"]
    kept = [r for r in medpix if not medpix_case_held_out(r.extra["case_id"])][:4]
    held = [r for r in medpix if medpix_case_held_out(r.extra["case_id"])][:2]
    vqa_rad = [r for r in images if r.source == "vqa-rad" and r.qa][:4]
    return slake_train + slake_validation + kept + held + vqa_rad


def _clip_config(seed: int = 0) -> ClipTrainConfig:
    return ClipTrainConfig(
        seed=seed,
        image=TINY_IMAGE,
        epochs=2,
        batch_size=4,
        dim=32,
        warmup_steps=1,
        max_seconds=None,
        log_every=1,
        threads=1,
    )


@pytest.fixture(scope="module")
def text_encoder():  # noqa: ANN201 - an Encoder
    return create("minilm")


@pytest.fixture(scope="module")
def clip_checkpoint(
    tiny_records: list[Record], text_encoder, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    from engine.training import train_clip

    out = tmp_path_factory.mktemp("models") / "clip"
    return train_clip(tiny_records, out, _clip_config(), progress=False, text_encoder=text_encoder)


@pytest.fixture(scope="module")
def ssl_checkpoint(tiny_records: list[Record], tmp_path_factory: pytest.TempPathFactory) -> Path:
    from engine.training import train_ssl

    return train_ssl(tiny_records, tmp_path_factory.mktemp("models") / "ssl", SSL_CONFIG, progress=False)


def test_validation_split_is_disjoint_from_training_pairs(shared_records: list[Record]) -> None:
    split = validation_split(shared_records)
    held = {r.id for r in split.validation}
    trained_paths = {path for path, _, _ in clip_pairs(split.train)}
    held_paths = {r.image_path for r in image_records(split.validation)}
    assert held and trained_paths and not (trained_paths & held_paths)
    assert not ({meta["id"] for _, _, meta in clip_pairs(split.train)} & held)
    by_source = {s: sum(r.source == s for r in image_records(split.validation)) for s in ("medpix", "slake")}
    assert by_source["medpix"] > 50 and by_source["slake"] > 50
    assert all(r.split == "validation" for r in split.validation if r.source == "slake")
    # a held-out MedPix case has no image on the training side, under any source's name
    held_synpics = {r.id.rsplit("_", 1)[-1] for r in split.validation if r.source == "medpix" and "_" in r.id}
    assert not any(r.id.split(":")[1] in held_synpics for r in split.train if r.source == "vqa-rad")
    assert validation_split(shared_records).rule.startswith("medsearch-val-v1")


def test_clip_pairs_build_texts_per_source(shared_records: list[Record]) -> None:
    by_source = {r.source: r for r in image_records(shared_records) if r.qa or r.source == "medpix"}
    medpix = dict(record_texts(by_source["medpix"]))
    assert medpix["caption"] == " ".join(by_source["medpix"].caption.split())
    assert {"findings", "diagnosis"} <= set(medpix)
    slake = dict(record_texts(by_source["slake"]))
    assert "showing" in slake["caption"] and "qa" in slake
    vqa_rad = [kind for kind, _ in record_texts(by_source["vqa-rad"])]
    assert "qa" in vqa_rad
    assert not any(text.lower().endswith(" no") for _, text in record_texts(by_source["vqa-rad"]))


def test_clip_checkpoint_reloads_with_identical_vectors(
    clip_checkpoint: Path, tiny_records: list[Record], text_encoder
) -> None:
    config = json.loads((clip_checkpoint / "config.json").read_text())
    assert (config["kind"], config["space"], config["dim"], config["preprocessing"]["size"]) == (
        "clip",
        "clip",
        32,
        32,
    )
    first = create(f"trained:{clip_checkpoint}", text_encoder=text_encoder)
    second = create(f"trained:{clip_checkpoint}", text_encoder=text_encoder)
    assert first.modalities == frozenset({"image", "text"}) and first.name == f"trained:{clip_checkpoint}"
    images = [Image.open(r.image_path) for r in tiny_records[:2]]
    texts = ["CT of the abdomen", "MRI of the brain"]
    vectors = first.encode_images(images)
    assert vectors.shape == (2, 32) and vectors.dtype == np.float32
    np.testing.assert_array_equal(vectors, second.encode_images(images))
    np.testing.assert_array_equal(first.encode_texts(texts), second.encode_texts(texts))
    np.testing.assert_allclose(np.linalg.norm(first.encode_texts(texts), axis=1), 1.0, rtol=1e-5)
    untrained = create(f"trained:{clip_checkpoint}", untrained=True, text_encoder=text_encoder)
    assert not np.allclose(untrained.encode_images(images), vectors)


def test_clip_model_card(clip_checkpoint: Path, tiny_records: list[Record]) -> None:
    card = json.loads((clip_checkpoint / "model_card.json").read_text())
    held = set(card["validation_split"]["held_out_ids"])
    assert held and held == {r.id for r in validation_split(tiny_records).validation if r.image_path}
    assert card["data"]["images"] == len(tiny_records) - len(held)
    assert set(card["data"]["images_per_source"]) == {"slake", "medpix", "vqa-rad"}
    per_epoch = card["data"]["images"] // 4  # batch size 4, the last partial batch dropped
    assert card["training"]["steps"] == len(card["loss_curve"]) == 2 * per_epoch
    assert card["training"]["epochs"] == 2
    assert card["config"]["seed"] == 0 and card["training"]["wall_seconds"] > 0
    metrics = card["validation_metrics"]
    assert metrics["n_images"] == len(held)
    assert {"random", "raw-pixel", "trained"} <= set(metrics["methods"])


def test_same_seed_same_weights(
    clip_checkpoint: Path, tiny_records: list[Record], text_encoder, tmp_path: Path
) -> None:
    from safetensors.torch import load_file

    from engine.training import train_clip

    again = train_clip(
        tiny_records, tmp_path / "again", _clip_config(0), progress=False, text_encoder=text_encoder
    )
    other = train_clip(
        tiny_records, tmp_path / "other", _clip_config(1), progress=False, text_encoder=text_encoder
    )
    reference = load_file(str(clip_checkpoint / "model.safetensors"))
    repeated = load_file(str(again / "model.safetensors"))
    different = load_file(str(other / "model.safetensors"))
    assert all(np.array_equal(reference[k].numpy(), repeated[k].numpy()) for k in reference)
    assert not all(np.array_equal(reference[k].numpy(), different[k].numpy()) for k in reference)


def test_ssl_checkpoint_is_image_only(
    ssl_checkpoint: Path, tiny_records: list[Record], tmp_path: Path
) -> None:
    encoder = create(f"trained:{ssl_checkpoint}")
    assert (encoder.space, encoder.modalities) == ("ssl", frozenset({"image"}))
    images = [Image.open(r.image_path) for r in tiny_records[:3]]
    vectors = encoder.encode_images(images)
    assert vectors.shape == (3, encoder.dim)
    with pytest.raises(NotImplementedError):
        encoder.encode_texts(["text"])
    copy = shutil.copytree(ssl_checkpoint, tmp_path / "copied")
    np.testing.assert_array_equal(create(f"trained:{copy}").encode_images(images), vectors)
    card = json.loads((ssl_checkpoint / "model_card.json").read_text())
    assert card["kind"] == "ssl" and card["validation_metrics"]["methods"]["trained"]["text_to_image"] is None
    from safetensors.torch import load_file

    from engine.training import train_ssl

    again = train_ssl(tiny_records, tmp_path / "again", SSL_CONFIG, progress=False)
    first, second = (
        load_file(str(ssl_checkpoint / "model.safetensors")),
        load_file(str(again / "model.safetensors")),
    )
    assert all(np.array_equal(first[k].numpy(), second[k].numpy()) for k in first)


def test_weight_average_and_feature_heads_reload(
    tiny_records: list[Record], text_encoder, tmp_path: Path
) -> None:
    """An EMA of the weights is what gets saved, and heads on the features rebuild from config.json."""
    import dataclasses

    from engine.training import train_clip

    config = dataclasses.replace(_clip_config(), ema_decay=0.5, head_input="features")
    out = train_clip(tiny_records, tmp_path / "ema", config, progress=False, text_encoder=text_encoder)
    assert json.loads((out / "config.json").read_text())["head_input"] == "features"
    assert json.loads((out / "model_card.json").read_text())["config"]["ema_decay"] == 0.5
    images = [Image.open(r.image_path) for r in tiny_records[:2]]
    vectors = create(f"trained:{out}", text_encoder=text_encoder).encode_images(images)
    assert vectors.shape == (2, 32) and np.isfinite(vectors).all()


def test_missing_checkpoint_names_the_folder(tmp_path: Path) -> None:
    from engine.errors import EncoderUnavailableError

    with pytest.raises(EncoderUnavailableError, match=str(tmp_path / "nothing")):
        create(f"trained:{tmp_path / 'nothing'}")


@pytest.mark.slow
def test_default_clip_training_meets_targets(shared_records: list[Record], tmp_path: Path) -> None:
    """The default configuration (at most ~10 minutes on 2 cores) against the issue's held-out targets."""
    from engine.training import train_clip

    out = train_clip(shared_records, tmp_path / "clip", progress=False)
    card = json.loads((out / "model_card.json").read_text())
    assert card["training"]["wall_seconds"] <= 600
    methods = card["validation_metrics"]["methods"]
    assert (
        methods["trained"]["text_to_image"]["R@10"]
        >= 3 * card["validation_metrics"]["chance"]["text_to_image"]["R@10"]
    )


def test_tuning_split_stays_inside_training(shared_records: list[Record]) -> None:
    from engine.training.data import tuning_split

    split = validation_split(shared_records)
    tune = tuning_split(split.train)
    fit_ids, tune_ids = {r.id for r in tune.train}, {r.id for r in tune.validation}
    assert fit_ids | tune_ids == {r.id for r in split.train} and not fit_ids & tune_ids
    assert tune_ids and not tune_ids & {r.id for r in split.validation}
    cases = {r.extra["case_id"] for r in tune.validation if r.source == "medpix" and r.image_path}
    assert not any(r.extra.get("case_id") in cases for r in tune.train if r.source == "medpix")


def test_ssl_starts_from_the_clip_backbone(
    clip_checkpoint: Path, tiny_records: list[Record], tmp_path: Path
) -> None:
    """`init_from` copies the clip tower's backbone (not its projection) into the ssl tower before training."""
    import dataclasses

    import torch

    from engine.training import train_ssl
    from engine.training.checkpoint import read_weights, unprefixed
    from engine.training.errors import TrainingDataError
    from engine.training.models import ImageTower
    from engine.training.ssl import load_backbone

    clip_backbone = unprefixed("image.backbone.", read_weights(clip_checkpoint))
    tower = ImageTower(SSL_CONFIG.backbone, 1, 16, 32, {}, 32, head_input="features")
    assert not all(torch.equal(v, clip_backbone[k]) for k, v in tower.backbone.state_dict().items())
    load_backbone(tower, clip_checkpoint, SSL_CONFIG.backbone)
    assert all(torch.equal(v, clip_backbone[k]) for k, v in tower.backbone.state_dict().items())
    with pytest.raises(TrainingDataError, match="cannot start"):
        load_backbone(tower, clip_checkpoint, "resnet18")

    config = dataclasses.replace(SSL_CONFIG, init_from=str(clip_checkpoint))
    out = train_ssl(tiny_records, tmp_path / "ssl", config, progress=False)
    card = json.loads((out / "model_card.json").read_text())
    assert card["config"]["init_from"] == str(clip_checkpoint)
    scratch = load_file_tensors(train_ssl(tiny_records, tmp_path / "scratch", SSL_CONFIG, progress=False))
    started = load_file_tensors(out)
    assert any(not torch.equal(started[k], scratch[k]) for k in scratch if k.startswith("image.backbone."))


def load_file_tensors(folder: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(folder / "model.safetensors"))


@pytest.mark.parametrize("from_clip", [True, False])
def test_workspace_trains_ssl_from_its_clip_checkpoint(
    clip_checkpoint: Path, shared_data: Path, tmp_path: Path, monkeypatch, from_clip: bool
) -> None:
    """`medsearch train ssl` passes this home's clip checkpoint as `init_from` (unless --from-scratch)."""
    from engine import training
    from engine.settings import Settings
    from engine.workspace import Workspace

    home = tmp_path / "home"
    shutil.copytree(clip_checkpoint, home / "models" / "clip")
    seen = {}

    def fake_train_ssl(records, out, config, progress=True):  # noqa: ANN001, ANN202 - records what it gets
        seen["config"] = config
        return out

    monkeypatch.setattr(training, "train_ssl", fake_train_ssl)
    with Workspace(Settings(home=home, data=shared_data)) as workspace:
        workspace.train("ssl", from_clip=from_clip)
    expected = str(home / "models" / "clip") if from_clip else None
    assert seen["config"].init_from == expected
    if (
        from_clip
    ):  # a clip tower trained with another held-out split is not a start: its weights saw ssl's held out
        card = home / "models" / "clip" / "model_card.json"
        data = json.loads(card.read_text())
        data["validation_split"]["rule"] = "another split"
        card.write_text(json.dumps(data))
        with Workspace(Settings(home=home, data=shared_data)) as workspace:
            workspace.train("ssl", force=True)
        assert seen["config"].init_from is None


def test_near_duplicates_of_held_out_images_are_not_trained_on(shared_records: list[Record]) -> None:
    """SLAKE's official split cuts volumes slice by slice: xmlab403 (train) is the slice next to xmlab404
    (validation), so training skips it; an unrelated training image stays."""
    from engine.training.config import SplitConfig
    from engine.training.data import load_training_bank, near_duplicate_rows

    by_id = {r.id: r for r in image_records(shared_records)}
    train = [by_id["slake:xmlab403"], by_id["slake:xmlab1"], by_id["vqa-rad:synpic676"]]
    held_out = [by_id["slake:xmlab404"]]
    assert [r.split for r in train[:2]] == ["train", "train"] and held_out[0].split == "validation"
    bank, kept, dropped = load_training_bank(train, held_out, 32, SplitConfig(), progress=False)
    assert dropped == 1 and [r.id for r in kept] == ["slake:xmlab1", "vqa-rad:synpic676"] and len(bank) == 2
    everything = load_training_bank(train, held_out, 32, SplitConfig(near_duplicate_correlation=None), False)
    assert everything[2] == 0 and len(everything[1]) == 3
    assert "correlates >= 0.95" in validation_split(shared_records).rule
    # the rule itself: an image and its noisy copy correlate; a different pattern does not
    rng = np.random.default_rng(0)
    base = rng.integers(0, 255, (1, 48, 48)).astype(np.uint8)
    noisy = np.clip(base + rng.normal(0, 8, base.shape), 0, 255).astype(np.uint8)
    other = rng.integers(0, 255, (1, 48, 48)).astype(np.uint8)
    assert near_duplicate_rows(np.concatenate([noisy, other]), base, 0.95).tolist() == [True, False]
    assert not near_duplicate_rows(np.zeros((0, 48, 48), np.uint8), base, 0.95).any()


def test_clip_never_mirrors_an_image_whose_text_names_a_side(tmp_path: Path, text_encoder) -> None:
    from engine.training.clip import prepare_clip_data

    records = []
    for number, caption in enumerate(["Mass in the left frontal lobe", "Midline mass", "Rt kidney stone"]):
        path = tmp_path / f"image{number}.png"
        Image.fromarray(np.full((40, 40), 60 * number, dtype=np.uint8)).save(path)
        body_part = "head" if number < 2 else "abdomen"
        records.append(Record(id=f"folder:{number}", kind="image+text", source="folder", image_path=str(path),
                              caption=caption, body_part=body_part))  # fmt: skip
    data = prepare_clip_data(records, _clip_config(), text_encoder, progress=False)
    # head images may be mirrored (config), but not the one whose caption says "left"; abdomen never
    assert data.flip.tolist() == [False, True, False]


def test_a_budget_spent_before_the_first_step_saves_nothing(tiny_records: list[Record], tmp_path: Path) -> None:
    from dataclasses import replace

    from engine.training import train_ssl
    from engine.training.errors import TrainingDataError

    out = tmp_path / "ssl"
    with pytest.raises(TrainingDataError, match="no training step ran"):
        train_ssl(tiny_records, out, replace(SSL_CONFIG, max_seconds=1e-6), progress=False)
    assert not out.exists()


def test_a_save_interrupted_between_its_renames_is_recovered(tmp_path: Path, monkeypatch) -> None:
    """The old checkpoint is moved aside, then the new one moved in: a crash in between leaves only
    `<name>.previous`, which readers and the next save put back instead of losing it."""
    import os

    import torch

    from engine.training import checkpoint

    out = tmp_path / "ssl"
    checkpoint.save_checkpoint(out, {"kind": "ssl", "n": 1}, {"w": torch.ones(2)}, {"card": 1})
    real_replace = os.replace

    def crash_on_move_in(source, target):
        if str(source).endswith(".partial"):
            raise KeyboardInterrupt("power cut")
        real_replace(source, target)

    monkeypatch.setattr(checkpoint.os, "replace", crash_on_move_in)
    with pytest.raises(KeyboardInterrupt):
        checkpoint.save_checkpoint(out, {"kind": "ssl", "n": 2}, {"w": torch.zeros(2)}, {"card": 2})
    monkeypatch.setattr(checkpoint.os, "replace", real_replace)
    assert not out.exists() and (tmp_path / "ssl.previous").is_dir()
    assert checkpoint.read_config(out)["n"] == 1  # a reader restores the old checkpoint
    assert out.is_dir() and not (tmp_path / "ssl.previous").exists()
    checkpoint.save_checkpoint(out, {"kind": "ssl", "n": 3}, {"w": torch.zeros(2)}, {"card": 3})
    assert checkpoint.read_config(out)["n"] == 3 and not (tmp_path / "ssl.partial").exists()
