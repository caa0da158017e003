"""`OnnxTransformer`: a sentence-transformers text model's transformer exported to ONNX and run by onnxruntime,
for query-sized batches on CPU.

A one-query all-MiniLM-L6-v2 pass is ~2.2x faster in onnxruntime than in torch (traced or not; measured on the
latency benchmark's clinical queries on one thread), and the MiniLM encode is most of a search's CPU. The export
happens in memory when the encoder loads (a few seconds, no file written); pooling and normalisation still run
as the model's own modules. The session is checked against the eager model on probe texts (one text, and a
padded batch of texts of different lengths) and refused when a vector differs by more than `TOLERANCE`: the
encoder then falls back to the TorchScript trace or to eager torch.
"""

from __future__ import annotations

import io
import logging
import warnings
from typing import Any

import numpy as np

from engine.encoders.traced import _INPUTS, PROBES, TOLERANCE, ReplacedTransformer, _LastHiddenState

logger = logging.getLogger(__name__)

OPSET = 17


class OnnxTransformer(ReplacedTransformer):
    """The transformer as an onnxruntime session (see the module docstring)."""

    def __init__(self, model: Any, session: Any, inputs: tuple[str, ...]) -> None:
        super().__init__(model, inputs)
        self._session = session

    def hidden(self, features: dict[str, Any]) -> Any:
        import torch

        feed = {name: features[name].cpu().numpy().astype(np.int64) for name in self._inputs}
        return torch.from_numpy(self._session.run(None, feed)[0])

    @classmethod
    def build(cls, model: Any, prepare: Any) -> OnnxTransformer | None:
        """Export `model`'s transformer, open it in onnxruntime (one thread) and check it against `model`; None
        when onnxruntime is not installed or the export, the session or the check fails."""
        try:
            import onnxruntime
        except ImportError:
            logger.info("onnxruntime is not installed: MiniLM queries run in torch")
            return None
        import torch

        try:
            network = getattr(model[0], "model", None) or model[0].auto_model
            features = prepare(list(PROBES))
            inputs = tuple(name for name in _INPUTS if name in features)
            buffer = io.BytesIO()
            axes = {name: {0: "batch", 1: "tokens"} for name in (*inputs, "hidden")}
            with torch.inference_mode(), warnings.catch_warnings():
                warnings.simplefilter("ignore")  # exporter notes
                torch.onnx.export(
                    _LastHiddenState(network, inputs).eval(),
                    tuple(features[name] for name in inputs),
                    buffer,
                    input_names=list(inputs),
                    output_names=["hidden"],
                    dynamic_axes=axes,
                    opset_version=OPSET,
                    dynamo=False,
                )
            options = onnxruntime.SessionOptions()
            options.intra_op_num_threads = 1  # query-sized batches: one thread, as the torch path
            options.inter_op_num_threads = 1
            options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
            session = onnxruntime.InferenceSession(
                buffer.getvalue(), options, providers=["CPUExecutionProvider"]
            )
            runner = cls(model, session, inputs)
            worst = runner.largest_difference(prepare)
        except Exception as e:  # noqa: BLE001 - any failure of an optional speed-up falls back to torch
            logger.warning(
                "MiniLM queries stay in torch: onnx export or session failed (%s: %s)", type(e).__name__, e
            )
            return None
        if worst > TOLERANCE:
            logger.warning(
                "MiniLM queries stay in torch: onnxruntime differs by %.2g (> %g)", worst, TOLERANCE
            )
            return None
        logger.info("MiniLM queries run in onnxruntime (largest difference %.2g)", worst)
        return runner
