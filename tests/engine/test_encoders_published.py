"""open_clip and DINOv2 encoders, exercised with small models built and saved locally (no hub, no network)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from engine.encoders import Encoder, create, names
from engine.errors import EncoderUnavailableError

TINY_OPEN_CLIP = {
    "embed_dim": 16,
    "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "patch_size": 16, "head_width": 16},
    "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 16, "heads": 1, "layers": 1},
}


@pytest.fixture(scope="module")
def images() -> list[Image.Image]:
    rng = np.random.default_rng(0)
    return [Image.fromarray(rng.integers(0, 255, (40, 50, 3), dtype=np.uint8)) for _ in range(2)]


@pytest.fixture(scope="module")
def open_clip_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny custom open_clip model saved as open_clip's `local-dir:` layout (config + safetensors)."""
    open_clip = pytest.importorskip("open_clip")
    import torch
    from safetensors.torch import save_file

    folder = tmp_path_factory.mktemp("open_clip_tiny")
    config_file = folder / "tiny-test-clip.json"
    config_file.write_text(json.dumps(TINY_OPEN_CLIP))
    open_clip.add_model_config(str(config_file))
    torch.manual_seed(0)
    model = open_clip.create_model("tiny-test-clip")
    save_file(model.state_dict(), str(folder / "open_clip_model.safetensors"))
    (folder / "open_clip_config.json").write_text(json.dumps({"model_cfg": TINY_OPEN_CLIP}))
    return folder


def _check_vectors(vectors: np.ndarray, n: int, dim: int) -> None:
    assert vectors.dtype == np.float32 and vectors.shape == (n, dim)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-5)


def test_registry_knows_the_image_families() -> None:
    assert {"open_clip", "dinov2", "trained", "minilm"} <= set(names())


def test_open_clip_local_folder_encodes_images_and_texts(
    open_clip_folder: Path, images: list[Image.Image]
) -> None:
    encoder = create(f"open_clip:{open_clip_folder}")
    assert isinstance(encoder, Encoder)
    assert (encoder.space, encoder.dim, encoder.modalities) == ("clip", 16, frozenset({"image", "text"}))
    _check_vectors(encoder.encode_images(images), 2, 16)
    _check_vectors(encoder.encode_texts(["chest x-ray", "brain MRI"]), 2, 16)
    explicit = create(f"open_clip:local-dir:{open_clip_folder}")
    np.testing.assert_allclose(explicit.encode_images(images), encoder.encode_images(images), atol=1e-6)


def test_open_clip_model_name_with_pretrained_file(open_clip_folder: Path, images: list[Image.Image]) -> None:
    from_folder = create(f"open_clip:{open_clip_folder}")
    by_name = create(
        "open_clip:tiny-test-clip",
        config_path=str(open_clip_folder / "tiny-test-clip.json"),
        pretrained=str(open_clip_folder / "open_clip_model.safetensors"),
    )
    texts = ["a CT of the abdomen", "a chest radiograph"]
    np.testing.assert_allclose(by_name.encode_texts(texts), from_folder.encode_texts(texts), atol=1e-6)
    np.testing.assert_allclose(by_name.encode_images(images), from_folder.encode_images(images), atol=1e-5)


def test_open_clip_missing_weights_file_names_the_problem(tmp_path: Path) -> None:
    pytest.importorskip("open_clip")
    with pytest.raises(EncoderUnavailableError, match="local-dir"):
        create("open_clip:ViT-B-32", pretrained=str(tmp_path / "missing.safetensors"))


def test_dinov2_local_folder(tmp_path: Path, images: list[Image.Image]) -> None:
    transformers = pytest.importorskip("transformers")
    import torch

    torch.manual_seed(0)
    config = transformers.Dinov2Config(
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=64,
        image_size=28,
        patch_size=14,
    )
    transformers.Dinov2Model(config).save_pretrained(tmp_path / "dinov2-tiny")
    encoder = create(f"dinov2:{tmp_path / 'dinov2-tiny'}")
    assert (encoder.space, encoder.dim, encoder.modalities) == ("ssl", 32, frozenset({"image"}))
    _check_vectors(encoder.encode_images(images), 2, 32)
    both = create(f"dinov2:{tmp_path / 'dinov2-tiny'}", pooling="cls+mean")
    _check_vectors(both.encode_images(images), 2, 64)
    with pytest.raises(NotImplementedError):
        encoder.encode_texts(["text"])


def test_dinov2_with_registers_pools_patches_only_and_crops_224(
    tmp_path: Path, images: list[Image.Image]
) -> None:
    """Published configs say image_size 518 (position embeddings): the fallback crop is DINOv2's 224; the mean
    pooling skips the class token and the register tokens."""
    transformers = pytest.importorskip("transformers")
    import torch

    torch.manual_seed(0)
    config = transformers.Dinov2WithRegistersConfig(
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=64,
        image_size=518,
        patch_size=14,
        num_register_tokens=4,
    )
    transformers.Dinov2WithRegistersModel(config).save_pretrained(tmp_path / "dinov2-reg")
    encoder = create(f"dinov2:{tmp_path / 'dinov2-reg'}", pooling="mean")
    assert encoder.processor.crop_size == {"height": 224, "width": 224}
    vectors = encoder.encode_images(images)
    _check_vectors(vectors, 2, 32)
    inputs = encoder.processor(images=[image.convert("RGB") for image in images], return_tensors="pt")
    with torch.inference_mode():
        hidden = encoder.model(**inputs).last_hidden_state
    assert hidden.shape[1] == 1 + 4 + (224 // 14) ** 2
    expected = torch.nn.functional.normalize(hidden[:, 5:].mean(dim=1), dim=1).numpy()
    assert np.allclose(vectors, expected, atol=1e-5)


def test_dinov2_folder_without_model_is_unavailable(tmp_path: Path) -> None:
    pytest.importorskip("transformers")
    (tmp_path / "empty").mkdir()
    with pytest.raises(EncoderUnavailableError, match="empty"):
        create(f"dinov2:{tmp_path / 'empty'}")


def test_importing_engine_modules_loads_no_torch() -> None:
    code = (
        "import sys, engine, engine.encoders, engine.training, engine.evaluation.retrieval;"
        "heavy = [m for m in ('torch', 'open_clip', 'timm', 'transformers') if m in sys.modules];"
        "print(','.join(heavy))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == ""
