"""The `vllm:MODEL` generator: vLLM in process on a GPU, images passed to vision-language models.

`pip install 'medsearch[vllm]'`. `vllm` is imported inside `VllmGenerator`, so this module (and
its CPU-testable `build_vllm_request`) imports without it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from engine.rag.base import Message
from engine.rag.errors import GeneratorUnavailableError
from engine.rag.prompts import message_text

if TYPE_CHECKING:
    from PIL.Image import Image

logger = logging.getLogger(__name__)

INSTALL_HINT = "pip install 'medsearch[vllm]' on a machine with an NVIDIA GPU (CUDA)"


def with_image_placeholders(messages: list[Message], image_count: int) -> list[Message]:
    """Copy `messages` with `image_count` {"type": "image"} parts before the last user message's text.

    This is the layout HF chat templates of vision-language models (Qwen2-VL, LLaVA) turn into their
    image tokens; string contents become a single text part.
    """
    converted = [dict(message) for message in messages]
    if image_count == 0:
        return converted
    users = [index for index, message in enumerate(converted) if message.get("role") == "user"]
    if not users:
        raise ValueError("images need a user message to attach to; messages has none")
    last = converted[users[-1]]
    text = message_text(last.get("content"))
    last["content"] = [{"type": "image"} for _ in range(image_count)] + [{"type": "text", "text": text}]
    return converted


def build_vllm_request(
    messages: list[Message],
    images: list[Image] | None,
    apply_chat_template: Callable[..., str],
) -> dict[str, Any]:
    """The vLLM prompt dict: {"prompt": str} plus {"multi_modal_data": {"image": ...}} when images are given.

    `apply_chat_template` is the model tokenizer's (called with tokenize=False, add_generation_prompt=True).
    """
    images = list(images or [])
    chat = with_image_placeholders(messages, len(images))
    prompt = apply_chat_template(chat, tokenize=False, add_generation_prompt=True)
    request: dict[str, Any] = {"prompt": prompt}
    if images:
        request["multi_modal_data"] = {"image": images[0] if len(images) == 1 else images}
    return request


class VllmGenerator:
    """A model served by vLLM's offline `LLM` engine in this process (GPU only).

    model: a hub id or local folder. Extra options (`max_model_len`, `gpu_memory_utilization`,
    `limit_mm_per_prompt`, ...) go to `vllm.LLM`. `stream` yields the whole answer once.
    """

    def __init__(self, model: str, seed: int = 0, **engine_options: Any) -> None:
        if not model:
            raise ValueError("give the model as 'vllm:MODEL', e.g. 'vllm:Qwen/Qwen2-VL-2B-Instruct'")
        try:
            import vllm
        except ImportError as e:
            raise GeneratorUnavailableError(
                f"generator 'vllm:{model}' needs the vllm package: {INSTALL_HINT}"
            ) from e
        import torch

        if not torch.cuda.is_available():
            raise GeneratorUnavailableError(
                f"generator 'vllm:{model}' needs a CUDA GPU and none is visible; use 'local', 'extractive' "
                "or 'openai:URL' pointing at a `vllm serve` on a GPU machine"
            )
        self._vllm = vllm
        self.seed = seed
        self.llm = vllm.LLM(model=model, seed=seed, **engine_options)
        self.tokenizer = self.llm.get_tokenizer()
        self.name = f"vllm:{model}"
        logger.info("vLLM loaded %s", model)

    def generate(
        self,
        messages: list[Message],
        images: list[Image] | None = None,
        max_tokens: int = 256,
        temperature: float = 0.0,
    ) -> str:
        """One completion; images reach the model through `multi_modal_data`."""
        request = build_vllm_request(messages, images, self.tokenizer.apply_chat_template)
        params = self._vllm.SamplingParams(max_tokens=max_tokens, temperature=temperature, seed=self.seed)
        outputs = self.llm.generate([request], params, use_tqdm=False)
        return outputs[0].outputs[0].text.strip()

    def stream(
        self,
        messages: list[Message],
        images: list[Image] | None = None,
        max_tokens: int = 256,
        temperature: float = 0.0,
    ) -> Iterator[str]:
        """The offline engine does not stream tokens: yield the whole answer once."""
        yield self.generate(messages, images, max_tokens, temperature)
