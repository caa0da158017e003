"""MiniLM query batches through the traced transformer: same vectors as the eager model, a setting, a fallback."""

from __future__ import annotations

import numpy as np
import pytest

from engine.encoders.minilm import SMALL_BATCH, MiniLMEncoder
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
    return MiniLMEncoder(traced=False)


def test_traced_vectors_equal_the_eager_ones(minilm, eager):
    assert minilm._traced is not None and eager._traced is None
    for texts in ([QUERIES[0]], [QUERIES[2]], QUERIES):  # single texts and a padded batch
        fast, slow = minilm.encode_texts(texts), eager.encode_texts(texts)
        assert fast.dtype == np.float32 and fast.shape == (len(texts), 384)
        assert np.abs(fast - slow).max() < 1e-5
        assert np.allclose(np.linalg.norm(fast, axis=1), 1, atol=1e-5)


def test_large_batches_take_the_encode_path(minilm, eager):
    texts = [f"{QUERIES[i % len(QUERIES)]} {i}" for i in range(SMALL_BATCH + 1)]
    assert np.abs(minilm.encode_texts(texts) - eager.encode_texts(texts)).max() < 1e-5


def test_the_setting_reaches_the_encoder(tmp_path):
    settings = Settings(home=tmp_path, encoders={"minilm_traced": False})
    assert settings.encoders.minilm_traced is False
    with Workspace(settings) as workspace:
        assert workspace.encoder("minilm")._traced is None
    assert Settings(home=tmp_path).encoders.minilm_traced is True


def test_a_model_that_cannot_be_traced_stays_eager(eager, caplog):
    assert TracedTransformer.build(object(), eager._prepare) is None
    assert "stays eager" in caplog.text
