"""Generators: registry, prompts, extractive, the real local GGUF model, a real OpenAI-compatible server, vLLM."""

import json
import re
import socket
import sys
import threading
import time
from collections.abc import Iterator

import pytest
from PIL import Image

from engine import rag
from engine.errors import EngineError
from engine.rag import Context, build_messages, parse_citations
from engine.rag.errors import GeneratorRequestError, GeneratorUnavailableError, UnknownGeneratorError

CONTEXTS = [
    Context(id="r1", text="The heart size is normal. There is a right lower lobe pneumonia.", score=0.9),
    Context(
        id="r2", text="No pleural effusion.\nNo pneumothorax is seen.", score=0.7, image_path="/x/r2.png"
    ),
]


# --- registry -----------------------------------------------------------------------------------


def test_names_and_unknown_generator() -> None:
    assert rag.names() == ["extractive", "local", "openai", "vllm"]
    with pytest.raises(UnknownGeneratorError, match="choose one of") as caught:
        rag.create("gpt-local")
    assert isinstance(caught.value, ValueError) and isinstance(caught.value, EngineError)


def test_import_engine_rag_stays_light() -> None:
    import subprocess

    code = "import sys, engine.rag; print(sorted(m for m in ('torch','transformers','httpx','vllm') if m in sys.modules))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


# --- prompts ------------------------------------------------------------------------------------


def test_build_messages_numbers_contexts_and_asks_for_citations() -> None:
    messages = build_messages("Is there a pneumonia?", CONTEXTS, facts=["pneumonia is_a lung disease"])
    assert [m["role"] for m in messages] == ["system", "user"]
    system = messages[0]["content"]
    assert "only the numbered context" in system and "[1] or [2]" in system
    assert "[1] The heart size is normal. There is a right lower lobe pneumonia." in system
    assert "[2] No pleural effusion. No pneumothorax is seen." in system  # one line per context
    assert "Facts:\n- pneumonia is_a lung disease" in system
    assert messages[1]["content"].startswith("Question: Is there a pneumonia?")
    assert rag.prompts.read_contexts(messages) == {
        1: "The heart size is normal. There is a right lower lobe pneumonia.",
        2: "No pleural effusion. No pneumothorax is seen.",
    }


def test_build_messages_report_and_empty_context() -> None:
    messages = build_messages("", [], task="report")
    assert "drafting a report" in messages[0]["content"]
    assert "(no context was retrieved)" in messages[0]["content"]
    assert messages[1]["content"].startswith("Indication: not given")
    with pytest.raises(ValueError, match="unknown task"):
        build_messages("q", CONTEXTS, task="summary")  # type: ignore[arg-type]


def test_parse_citations() -> None:
    assert parse_citations("Pneumonia [2], normal heart [1][2], see [7].", count=2) == [2, 1]


# --- extractive ---------------------------------------------------------------------------------


def test_extractive_answers_from_best_sentence_deterministically() -> None:
    generator = rag.create("extractive")
    messages = build_messages("Is there a pleural effusion?", CONTEXTS)
    answers = {generator.generate(messages) for _ in range(3)}
    assert answers == {"No pleural effusion. [2]"}
    assert "".join(generator.stream(messages)) == "No pleural effusion. [2]"
    two = rag.create("extractive", max_sentences=2).generate(build_messages("pneumonia heart size", CONTEXTS))
    assert two == "The heart size is normal. [1] There is a right lower lobe pneumonia. [1]"
    assert parse_citations(two) == [1]


def test_extractive_cut_keeps_the_citation() -> None:
    messages = build_messages("pneumonia heart size", CONTEXTS)
    full = rag.create("extractive", max_sentences=2).generate(messages)
    for budget in (2, 5, 9):
        cut = rag.create("extractive", max_sentences=2).generate(messages, max_tokens=budget)
        assert len(cut.split()) <= budget and re.search(r"\[\d\]$", cut), cut
        assert full.startswith(cut.rsplit(" [", 1)[0])


def test_extractive_without_context() -> None:
    generator = rag.create("extractive")
    assert generator.generate(build_messages("anything?", [])) == rag.extractive.NO_ANSWER
    # no overlap at all: the top-ranked context's first sentence
    assert generator.generate(build_messages("zzz?", CONTEXTS)) == "The heart size is normal. [1]"


# --- local (real GGUF) --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def local_generator(tmp_path_factory):
    cache_dir = tmp_path_factory.mktemp("llm-cache")
    started = time.perf_counter()
    generator = rag.create("local", cache_dir=cache_dir, threads=1)
    generator.load_seconds = time.perf_counter() - started
    generator.cache_dir = cache_dir
    return generator


def test_local_generator_answers_short_prompt(local_generator) -> None:
    messages = [{"role": "user", "content": "Name one organ seen on a chest X-ray. Answer in a few words."}]
    started = time.perf_counter()
    first = local_generator.generate(messages, max_tokens=12)
    latency = time.perf_counter() - started
    detail = f"load {local_generator.load_seconds:.1f}s, answer {latency:.2f}s: {first!r}"
    assert first.strip(), detail
    assert local_generator.generate(messages, max_tokens=12) == first  # greedy: deterministic
    assert "".join(local_generator.stream(messages, max_tokens=12)).strip() == first
    assert (
        rag.create("local", cache_dir=local_generator.cache_dir).model is local_generator.model
    )  # loaded once
    assert latency < 20, detail


def test_local_stream_raises_a_generation_error_instead_of_hanging(local_generator) -> None:
    """transformers refuses max_new_tokens=0 inside the worker thread; the stream must end and raise it."""
    import threading

    outcome: list[BaseException | list[str]] = []

    def consume() -> None:
        try:
            outcome.append(list(local_generator.stream([{"role": "user", "content": "Hi"}], max_tokens=0)))
        except Exception as e:  # noqa: BLE001 - the test inspects it
            outcome.append(e)

    reader = threading.Thread(target=consume, daemon=True)
    reader.start()
    reader.join(timeout=60)
    assert not reader.is_alive(), "stream() hung after the generation thread failed"
    assert isinstance(outcome[0], ValueError), outcome
    assert local_generator.generate([{"role": "user", "content": "Hi"}], max_tokens=3)  # lock released


def test_local_generator_reloads_from_converted_cache(local_generator) -> None:
    from engine.rag import local_generator as module

    gguf = module.bundled_gguf_path().resolve()
    started = time.perf_counter()
    tokenizer, model = module._load.__wrapped__(gguf, "cpu", local_generator.cache_dir.resolve())
    seconds = time.perf_counter() - started
    assert (local_generator.cache_dir / gguf.stem / "config.json").is_file()
    assert model is not local_generator.model
    messages = [{"role": "user", "content": "Name one organ seen on a chest X-ray. Answer in a few words."}]
    generator = module.LocalGenerator.__new__(module.LocalGenerator)
    generator.__dict__.update(vars(local_generator), tokenizer=tokenizer, model=model)
    assert generator.generate(messages, max_tokens=12) == local_generator.generate(messages, max_tokens=12)
    assert seconds < 15, f"cached reload took {seconds:.1f}s"


def test_workspace_gives_every_local_model_the_home_cache(tmp_path, monkeypatch) -> None:
    from engine.settings import Settings
    from engine.workspace import Workspace

    made = {}
    monkeypatch.setattr(rag, "create", lambda name, **options: made.setdefault(name, options) or object())
    with Workspace(Settings(home=tmp_path, data=None, kg_enabled=False)) as workspace:
        for name in ("local", "local:/models/other.gguf", "extractive"):
            workspace.generator(name)
    cache = tmp_path / "models" / "generators"
    assert made["local"]["cache_dir"] == cache and made["local:/models/other.gguf"]["cache_dir"] == cache
    assert "cache_dir" not in made["extractive"]


# --- openai: a real local OpenAI-compatible server ----------------------------------------------


def _server_app():
    from fastapi import FastAPI, Request
    from fastapi.responses import JSONResponse, PlainTextResponse, StreamingResponse

    app = FastAPI()
    app.state.requests = []

    @app.get("/v1/models")
    def models() -> dict:
        return {"object": "list", "data": [{"id": "tiny-echo", "object": "model"}]}

    @app.post("/v1/chat/completions")
    async def chat(request: Request):
        body = await request.json()
        app.state.requests.append({"body": body, "authorization": request.headers.get("authorization")})
        if body["model"] == "broken":
            return JSONResponse({"error": {"message": "model crashed"}}, status_code=500)
        if body["model"] == "not-json":
            return PlainTextResponse("<html>proxy page</html>")
        content = body["messages"][-1]["content"]
        images = 0
        if isinstance(content, list):
            images = sum(part["type"] == "image_url" for part in content)
            content = " ".join(part["text"] for part in content if part["type"] == "text")
        answer = f"echo {content.split()[-1]} images={images}"
        if not body.get("stream"):
            message = {"role": "assistant", "content": answer}
            return {"id": "1", "object": "chat.completion", "choices": [{"index": 0, "message": message}]}

        def events() -> Iterator[str]:
            for index, word in enumerate(answer.split(" ")):
                delta = {"content": word if index == 0 else " " + word}
                if index == 0:
                    delta["content"] = "  " + delta["content"]  # leading blanks: stream strips them too
                yield f"data: {json.dumps({'choices': [{'index': 0, 'delta': delta}]})}\n\n"
                if body["model"] == "fails-mid-stream":
                    yield f"data: {json.dumps({'error': {'message': 'out of memory', 'code': 500}})}\n\n"
                    return
            yield "data: [DONE]\n\n"

        return StreamingResponse(events(), media_type="text/event-stream")

    return app


@pytest.fixture(scope="module")
def openai_server():
    import uvicorn

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    app = _server_app()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.started, "test server did not start"
    yield f"http://127.0.0.1:{port}/v1", app
    server.should_exit = True
    thread.join(timeout=5)


def test_openai_generate_and_stream(openai_server, monkeypatch) -> None:
    url, app = openai_server
    monkeypatch.setenv("MEDSEARCH_OPENAI_API_KEY", "secret")
    generator = rag.create(f"openai:{url}")  # model from GET /models
    assert generator.model == "tiny-echo"
    messages = [{"role": "user", "content": "say hello"}]
    assert generator.generate(messages, max_tokens=5) == "echo hello images=0"
    assert "".join(generator.stream(messages)) == "echo hello images=0"
    sent = app.state.requests[-1]
    assert sent["authorization"] == "Bearer secret"
    assert sent["body"]["stream"] is True and sent["body"]["model"] == "tiny-echo"


def test_openai_sends_images_as_data_urls(openai_server) -> None:
    url, app = openai_server
    generator = rag.create(f"openai:{url}", model="tiny-echo")
    image = Image.new("RGB", (8, 8), "white")
    answer = generator.generate(build_messages("Is there an effusion?", CONTEXTS), images=[image])
    assert answer == "echo citations. images=1"
    parts = app.state.requests[-1]["body"]["messages"][-1]["content"]
    assert parts[0]["type"] == "text" and parts[0]["text"].startswith("Question: Is there an effusion?")
    assert parts[1]["image_url"]["url"].startswith("data:image/png;base64,")


def test_openai_http_errors_are_clear(openai_server) -> None:
    url, _ = openai_server
    messages = [{"role": "user", "content": "hi"}]
    broken = rag.create(f"openai:{url}", model="broken")
    with pytest.raises(GeneratorRequestError, match="HTTP 500.*model crashed"):
        broken.generate(messages)
    with pytest.raises(GeneratorRequestError, match="HTTP 500"):
        list(broken.stream(messages))
    with pytest.raises(GeneratorRequestError, match="failed while streaming: out of memory"):
        list(rag.create(f"openai:{url}", model="fails-mid-stream").stream(messages))
    with pytest.raises(GeneratorRequestError, match="did not return JSON"):
        rag.create(f"openai:{url}", model="not-json").generate(messages)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    with pytest.raises(GeneratorRequestError, match="is the server running"):
        rag.create(f"openai:http://127.0.0.1:{closed_port}/v1", model="m").generate(messages)


# --- vllm ---------------------------------------------------------------------------------------


def test_vllm_request_puts_images_in_multi_modal_data() -> None:
    from engine.rag.vllm_generator import build_vllm_request

    seen = {}

    def template(chat, tokenize, add_generation_prompt):
        seen["chat"] = chat
        return " | ".join(
            f"{m['role']}: "
            + (
                "".join("<image>" if p["type"] == "image" else p["text"] for p in m["content"])
                if isinstance(m["content"], list)
                else m["content"]
            )
            for m in chat
        )

    images = [Image.new("RGB", (4, 4)), Image.new("RGB", (4, 4), "white")]
    request = build_vllm_request(build_messages("Effusion?", CONTEXTS), images, template)
    assert request["multi_modal_data"] == {"image": images}
    assert "user: <image><image>Question: Effusion?" in request["prompt"]
    assert seen["chat"][0]["content"].startswith("You are a radiology assistant")
    one = build_vllm_request([{"role": "user", "content": "q"}], images[:1], template)
    assert one["multi_modal_data"] == {"image": images[0]}
    assert "multi_modal_data" not in build_vllm_request([{"role": "user", "content": "q"}], None, template)


def test_vllm_missing_names_the_extra(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "vllm", None)
    with pytest.raises(GeneratorUnavailableError, match=r"pip install 'medsearch\[vllm\]'.*GPU"):
        rag.create("vllm:Qwen/Qwen2-VL-2B-Instruct")


def test_vllm_generates_on_gpu() -> None:
    pytest.importorskip("vllm")
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("vLLM needs a CUDA GPU")
    generator = rag.create("vllm:Qwen/Qwen2-VL-2B-Instruct", max_model_len=2048)
    image = Image.new("RGB", (64, 64), "white")
    assert generator.generate(build_messages("What color is the image?", []), images=[image], max_tokens=8)
