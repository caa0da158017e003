"""`VqaService` (what `medsearch train vqa` / `ask` / `POST /ask` run): fitted on a real slice of VQA-RAD and
SLAKE train questions with MiniLM and a raw-pixel image encoder, saved and loaded back, answering with
citations, graph facts, answer types read from the question, and checked generator phrasing."""

from __future__ import annotations

import pickle
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from engine.errors import EngineError, QueryError
from engine.settings import Settings
from engine.vqa import VqaItem, vqa_items
from engine.vqa.service import (
    Answer,
    Question,
    VqaModelMissingError,
    VqaService,
    phrase_answer,
    states_answer,
    template_sentence,
)
from engine.workspace import Workspace


class PixEncoder:
    """Image-only test encoder: 8x8 grey thumbnails, mean-centred unit rows (64-d)."""

    name = "test-pix"
    dim = 64
    space = "clip"
    modalities = frozenset({"image"})

    def encode_images(self, images: Sequence[Image.Image]) -> np.ndarray:
        rows = [np.asarray(image.convert("L").resize((8, 8)), dtype=np.float32).ravel() for image in images]
        vectors = np.stack(rows) - np.stack(rows).mean(axis=1, keepdims=True)
        return (vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-6)).astype(np.float32)

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        raise NotImplementedError


@pytest.fixture(scope="module")
def train_items(shared_data: Path) -> list[VqaItem]:
    """Train questions of the first 30 SLAKE and 30 VQA-RAD train images."""
    from engine.datasets import load

    items: list[VqaItem] = []
    for name in ("slake", "vqa-rad"):
        train = [i for i in vqa_items(load(name, shared_data / name), name) if i.split == "train"]
        keep = set(sorted({i.record_id for i in train})[:30])
        items += [i for i in train if i.record_id in keep]
    return items


@pytest.fixture(scope="module")
def service(train_items, minilm, knowledge) -> VqaService:
    return VqaService.fit(
        train_items,
        minilm,
        {"clip": PixEncoder()},
        {"text": "minilm", "clip": "test-pix"},
        graph=knowledge.graph,
        k=5,
    )


def _ask(service: VqaService, minilm, questions: list[Question], **kwargs) -> list[Answer]:
    return service.answer(questions, minilm, {"clip": PixEncoder()}, **kwargs)


def test_training_image_questions_are_answered_with_citations(service, train_items, minilm):
    """On a training image, the answers come back with training pairs of that dataset as citations."""
    item = next(i for i in train_items if i.answer_type == "CLOSED" and i.qid.startswith("slake:"))
    image = Image.open(item.image_path)
    answers = _ask(
        service,
        minilm,
        [
            Question("q1", item.question, image),
            Question("q2", "Is this a CT or an MRI?", image),
            Question("q3", "Which organ is abnormal?", image),
        ],
    )
    by_qid = {i.qid: i for i in train_items}
    for answer in answers:
        assert 0.0 <= answer.confidence <= 1.0 + 1e-9
        assert answer.citations, answer
        for citation in answer.citations:
            assert citation["qid"] in by_qid and citation["record_id"] == by_qid[citation["qid"]].record_id
            assert citation["question"] == by_qid[citation["qid"]].question
            assert citation["supports"] == (by_qid[citation["qid"]].answer == answer.answer)
        # either the cases that gave this answer, or (none near did) the closest consulted, none agreeing
        assert len({c["supports"] for c in answer.citations}) == 1
    assert answers[0].answer_type == "CLOSED" and answers[0].answer in {"yes", "no"} | set(
        service.model.vocabulary
    )
    assert answers[1].answer_type == "CLOSED" and answers[1].answer in {"ct", "mri", "yes", "no"}
    assert answers[2].answer_type == "OPEN" and answers[2].answer in service.model.open_answers
    as_dict = answers[0].as_dict()
    assert (
        as_dict["citations"] == [c["record_id"] for c in answers[0].citations] and "sentence" not in as_dict
    )


def test_knowledge_questions_cite_graph_facts(service, train_items, minilm):
    """With the graph's vote weighted in, a function question about a chest image is answered from the
    graph fact (lung -> function -> breathe), an answer added to the vocabulary by the graph, and cites it."""
    from dataclasses import replace

    chest = next(
        i for i in train_items if i.qid.startswith("slake:") and any("Lung" in e for e in i.entities)
    )
    question = Question(
        "k", "What is the function of the main organ in this picture?", Image.open(chest.image_path)
    )
    graph_led = replace(service, model=replace(service.model, graph_weight=1.0))
    answer = _ask(graph_led, minilm, [question])[0]
    assert answer.answer == "breathe" and "breathe" in service.model.open_answers
    assert answer.facts and all(f["relation"] == "function" and f["value"] == "breathe" for f in answer.facts)
    assert chest.record_id in {f["record_id"] for f in answer.facts} | {
        c["record_id"] for c in answer.citations
    }
    # the engine's own weight (chosen on an inner hold-out) is a valid mixing weight, and facts never
    # contradict the answer they are shown with
    assert 0.0 <= service.model.graph_weight <= 1.0
    default = _ask(service, minilm, [question])[0]
    assert all(default.answer == f["value"].lower() for f in default.facts)


def test_save_and_load_give_the_same_answers(service, train_items, minilm, knowledge, tmp_path: Path):
    service.save(tmp_path / "vqa")
    assert (tmp_path / "vqa" / "card.json").is_file() and not list((tmp_path / "vqa").glob(".*.tmp"))
    loaded = VqaService.load(tmp_path / "vqa", knowledge.graph)
    image = Image.open(train_items[0].image_path)
    questions = [Question("a", "Is there a mass?", image), Question("b", "What organ is shown?", image)]
    assert [a.as_dict() for a in _ask(loaded, minilm, questions)] == [
        a.as_dict() for a in _ask(service, minilm, questions)
    ]
    assert loaded.card["data"]["slake"]["images"] == 30 and loaded.card["graph"] is True


def test_missing_or_corrupt_model_files_give_clear_errors(tmp_path: Path):
    with pytest.raises(VqaModelMissingError, match="medsearch train vqa"):
        VqaService.load(tmp_path / "nothing")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "model.pkl").write_bytes(b"not a pickle")
    with pytest.raises(EngineError, match="model.pkl"):
        VqaService.load(tmp_path / "bad")
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "model.pkl").write_bytes(pickle.dumps({"format_version": 0}))
    with pytest.raises(EngineError, match="format"):
        VqaService.load(tmp_path / "old")


def test_bad_questions_are_refused(service, minilm):
    with pytest.raises(QueryError, match="empty"):
        _ask(service, minilm, [Question("e", "   ")])
    with pytest.raises(QueryError, match="characters"):
        _ask(service, minilm, [Question("long", "why " * 400)])
    assert _ask(service, minilm, []) == []
    # no image: retrieval leans on the question; still an answer with citations
    answer = _ask(service, minilm, [Question("n", "Is this an MRI?")])[0]
    assert answer.answer in {"yes", "no"} and answer.citations


class FakeGenerator:
    name = "fake"

    def __init__(self, reply: str) -> None:
        self.reply = reply
        self.messages = None

    def generate(self, messages, images=None, max_tokens=256, temperature=0.0) -> str:
        self.messages = messages
        self.images = images
        if isinstance(self.reply, Exception):
            raise self.reply
        return self.reply


def _answer(answer: str = "yes", cited_answer: str = "yes") -> Answer:
    citations = tuple(
        {
            "qid": f"t{i}",
            "record_id": f"r{i}",
            "question": "Is there an effusion?",
            "answer": cited_answer,
            "similarity": 0.9,
            "supports": cited_answer == answer,
        }
        for i in range(2)
    )
    return Answer("q", "Is there an effusion?", answer, "CLOSED", 0.8, citations)


def test_generator_sentence_is_kept_only_when_it_states_the_answer_and_cites():
    good = FakeGenerator("Yes, there is a pleural effusion [1].")
    sentence, by = phrase_answer(_answer(), good)
    assert (sentence, by) == ("Yes, there is a pleural effusion [1].", "fake")
    prompt = good.messages[0]["content"]
    assert "[1] Similar case r0" in prompt and "[2] Similar case r1" in prompt
    for reply in ("Yes, there is an effusion.", "No effusion [1].", "Yes [7]."):
        sentence, by = phrase_answer(_answer(), FakeGenerator(reply))
        assert by == "template" and sentence == template_sentence(_answer())
    assert template_sentence(_answer()) == "Yes, as in the most similar prior cases [1][2]."
    assert phrase_answer(_answer(), None) == (template_sentence(_answer()), "template")


def test_answer_is_checked_word_by_word():
    """'no' is not stated by "nodule", nor by a sentence that also says "yes"; phrases match as whole words."""
    assert states_answer("No, there is no effusion [1].", "no")
    assert not states_answer("Yes, there is a nodule [1].", "no")
    assert not states_answer("Yes [1], although no mass is seen", "no")
    assert not states_answer("There is a right cleft [1].", "left")
    assert states_answer("The lesion is in the left lung [1].", "left lung")
    assert not states_answer("The left upper lung [1].", "left lung")
    for reply in ("Yes, there is a nodule [1].", "The right cleft [1]."):
        no = _answer("no", "no")
        assert phrase_answer(no, FakeGenerator(reply)) == (template_sentence(no), "template")


def test_cases_that_answered_otherwise_are_not_said_to_agree():
    differing = _answer("yes", cited_answer="no")
    assert template_sentence(differing) == "Yes; the most similar prior cases [1][2] answered otherwise."


def test_any_generator_failure_falls_back_to_the_template_and_the_image_is_passed():
    failing = FakeGenerator(ValueError("this model has no chat template"))
    assert phrase_answer(_answer(), failing) == (template_sentence(_answer()), "template")
    image = Image.new("L", (8, 8))
    seeing = FakeGenerator("Yes, an effusion [1].")
    assert phrase_answer(_answer(), seeing, image)[1] == "fake" and seeing.images == [image]
    assert phrase_answer(_answer(), seeing)[1] == "fake" and seeing.images is None


def test_workspace_ask_refuses_a_model_trained_with_other_encoders(
    service, minilm, knowledge, tmp_path: Path
):
    service.save(tmp_path / "models" / "vqa")
    settings = Settings(home=tmp_path, data=None, encoders={"clip": "test-pix"})
    with Workspace(settings) as workspace:
        workspace._encoders.update({"minilm": minilm, "test-pix": PixEncoder()})
        workspace._knowledge = knowledge
        answer = workspace.ask([Question("w", "Is this a CT?")], phrase=True)[0]
        assert answer.sentence and answer.phrased_by == "template"
    with Workspace(Settings(home=tmp_path, data=None)) as workspace:  # no clip encoder configured here
        workspace._encoders["minilm"] = minilm
        workspace._knowledge = knowledge
        with pytest.raises(EngineError, match="train vqa --force"):
            workspace.ask([Question("w", "Is this a CT?")])


def test_retrained_checkpoints_make_the_vqa_model_stale(tmp_path: Path):
    """Same `trained:PATH`, new weights (a new model card): the fingerprinted names differ."""
    from engine.workspace import _fingerprinted, _plain

    folder = tmp_path / "models" / "ssl"
    folder.mkdir(parents=True)
    (folder / "model_card.json").write_text('{"created": "2026-11-25T01:00:00"}')
    before = _fingerprinted(f"trained:{folder}")
    (folder / "model_card.json").write_text('{"created": "2026-11-25T02:00:00"}')
    after = _fingerprinted(f"trained:{folder}")
    assert before != after and _plain(before) == _plain(after) == f"trained:{folder}"
    assert _fingerprinted("minilm") == _plain("minilm") == "minilm"
