"""`TracedTransformer`: a TorchScript trace of a sentence-transformers text model's transformer, for query batches.

A one-query MiniLM pass spends about a third of its time in the Python of transformers' layer wrappers; the
trace runs the same operations without them, ~1.4x faster on CPU (measured on the 100k-record latency benchmark's
queries). The pooling and normalisation modules after the transformer still run as they are. The trace is checked
against the eager model on probe texts (one text, and a padded batch of texts of different lengths) when it is
built, and refused when a vector differs by more than `TOLERANCE`: the encoder then stays eager.

`torch.jit.trace` is deprecated in recent torch (it still works and warns); when it is gone or fails, `build`
returns None and the encoder stays eager.
"""

from __future__ import annotations

import logging
import warnings
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)

PROBES = (
    "pleural effusion",
    "no acute cardiopulmonary abnormality; the lungs are clear without focal consolidation or pneumothorax",
    "heart size normal",
)
TOLERANCE = 1e-5
_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


class ReplacedTransformer:
    """A `SentenceTransformer` whose first module (the transformer) runs elsewhere (a trace, an onnxruntime
    session): subclasses give `hidden` (features -> last hidden state); pooling and normalisation still run as
    the model's own modules. Call with the model's `preprocess` features; returns `sentence_embedding` (n, dim).
    """

    def __init__(self, model: Any, inputs: tuple[str, ...]) -> None:
        self._model = model
        self._inputs = inputs

    def hidden(self, features: dict[str, Any]) -> Any:
        raise NotImplementedError

    def __call__(self, features: dict[str, Any]) -> Any:
        features = dict(features)
        features["token_embeddings"] = self.hidden(features)
        for module in list(self._model)[1:]:  # pooling, normalisation
            features = module(features)
        return features["sentence_embedding"]

    def largest_difference(self, prepare: Any) -> float:
        """Largest absolute difference from the eager model over the probe texts (single texts, a padded batch)."""
        import torch

        worst = 0.0
        with torch.inference_mode():
            for texts in ([PROBES[0]], [PROBES[1]], list(PROBES)):
                features = prepare(texts)
                eager = self._model(dict(features))["sentence_embedding"]
                fast = self(features)
                worst = max(worst, float(np.abs(eager.float().numpy() - fast.float().numpy()).max()))
        return worst


class TracedTransformer(ReplacedTransformer):
    """The transformer as a TorchScript trace (see the module docstring)."""

    def __init__(self, model: Any, trace: Any, inputs: tuple[str, ...]) -> None:
        super().__init__(model, inputs)
        self._trace = trace

    def hidden(self, features: dict[str, Any]) -> Any:
        return self._trace(*(features[name] for name in self._inputs))

    @classmethod
    def build(cls, model: Any, prepare: Any) -> TracedTransformer | None:
        """Trace `model`'s transformer on the probes and check it against `model`; None when it cannot be used."""
        import torch

        try:
            transformer = model[0]
            network = getattr(transformer, "model", None) or transformer.auto_model
            features = prepare(list(PROBES))
            inputs = tuple(name for name in _INPUTS if name in features)
            with torch.inference_mode(), warnings.catch_warnings():
                warnings.simplefilter("ignore")  # the deprecation of torch.jit, and tracer notes
                trace = torch.jit.trace(
                    _LastHiddenState(network, inputs).eval(),
                    tuple(features[name] for name in inputs),
                    check_trace=False,
                )
                trace = torch.jit.freeze(trace)
            traced = cls(model, trace, inputs)
            worst = traced.largest_difference(prepare)
        except Exception as e:  # noqa: BLE001 - any failure of an optional speed-up leaves the model eager
            logger.warning("MiniLM stays eager: tracing its transformer failed (%s: %s)", type(e).__name__, e)
            return None
        if worst > TOLERANCE:
            logger.warning("MiniLM stays eager: its trace differs from it by %.2g (> %g)", worst, TOLERANCE)
            return None
        logger.info("MiniLM queries run a trace of its transformer (largest difference %.2g)", worst)
        return traced


class _LastHiddenState:
    """A module whose positional forward(input_ids, attention_mask[, token_type_ids]) returns the last hidden state
    (what torch.jit.trace needs); built lazily as a torch.nn.Module subclass so importing this file loads no torch."""

    def __new__(cls, network: Any, inputs: tuple[str, ...]) -> Any:
        import torch

        class LastHiddenState(torch.nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.network = network

            def forward(self, *tensors: torch.Tensor) -> torch.Tensor:
                return self.network(**dict(zip(inputs, tensors, strict=True))).last_hidden_state

        return LastHiddenState()
