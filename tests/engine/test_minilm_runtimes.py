"""MiniLM query batches through onnxruntime and through the traced transformer: the same vectors as the eager
model, the settings that choose them, and the fallbacks when one cannot be built."""

from __future__ import annotations

import numpy as np
import pytest

from engine.encoders.minilm import SMALL_BATCH, MiniLMEncoder
from engine.encoders.onnx_runtime import OnnxTransformer
from engine.encoders.traced import TracedTransformer
from engine.settings import Settings
from engine.workspace import Workspace

QUERIES = [
    "pleural effusion",
    "no pneumothorax",
    "enlarged heart with small bilateral pleural effusions and mild pulmonary vascular congestion",
    "x",
]


@pytest.fixture(scope="module")
def eager() -> MiniLMEncoder:
    return MiniLMEncoder(traced=False, onnx=False)


@pytest.fixture(scope="module")
def traced() -> MiniLMEncoder:
    return MiniLMEncoder(onnx=False)


def _same_vectors(fast: MiniLMEncoder, slow: MiniLMEncoder) -> None:
    for texts in ([QUERIES[0]], [QUERIES[2]], QUERIES):  # single texts and a padded batch
        a, b = fast.encode_texts(texts), slow.encode_texts(texts)
        assert a.dtype == np.float32 and a.shape == (len(texts), 384)
        assert np.abs(a - b).max() < 1e-5
        assert np.allclose(np.linalg.norm(a, axis=1), 1, atol=1e-5)


def test_onnx_vectors_equal_the_eager_ones(minilm, eager):
    pytest.importorskip("onnxruntime")
    assert minilm._onnx is not None and minilm._traced is None  # the default: onnxruntime, no trace needed
    assert eager._onnx is None and eager._traced is None
    _same_vectors(minilm, eager)


def test_traced_vectors_equal_the_eager_ones(traced, eager):
    assert traced._onnx is None and traced._traced is not None
    _same_vectors(traced, eager)


def test_large_batches_take_the_encode_path(minilm, eager):
    texts = [f"{QUERIES[i % len(QUERIES)]} {i}" for i in range(SMALL_BATCH + 1)]
    assert np.abs(minilm.encode_texts(texts) - eager.encode_texts(texts)).max() < 1e-5


def test_the_settings_reach_the_encoder(tmp_path):
    settings = Settings(home=tmp_path, encoders={"minilm_onnx": False, "minilm_traced": False})
    assert settings.encoders.minilm_onnx is False and settings.encoders.minilm_traced is False
    with Workspace(settings) as workspace:
        encoder = workspace.encoder("minilm")
        assert encoder._onnx is None and encoder._traced is None
    defaults = Settings(home=tmp_path).encoders
    assert defaults.minilm_onnx is True and defaults.minilm_traced is True


def test_models_that_cannot_be_exported_fall_back(eager, caplog):
    assert TracedTransformer.build(object(), eager._prepare) is None
    assert "stays eager" in caplog.text
    assert OnnxTransformer.build(object(), eager._prepare) is None
    pytest.importorskip("onnxruntime")  # without it, build returns None before trying (logged at INFO)
    assert "stay in torch" in caplog.text
