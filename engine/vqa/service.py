"""`VqaService`: the trained VQA model behind `medsearch ask`, `ask-batch`, `POST /ask` and the web app.

`medsearch train vqa` fits it once on the VQA-RAD and SLAKE *train* questions (answer head over MiniLM question
+ clip / ssl image embeddings, kNN retrieval over those training pairs, graph facts for knowledge questions)
and saves it under ``<home>/models/vqa/`` with a model card. Answering then costs one question encode, one
image encode per space and a few matrix products; the models are loaded once per process.

Every answer carries a confidence and citations: the training (image, question) pairs that voted for it (their
record ids are records of the demo collection, so the UI can show them) and the graph facts it used. The
generator only phrases a sentence when asked to, and its sentence is kept only when it states the decided
answer and cites at least one of the numbered cases; otherwise the sentence is composed from a template.
"""

from __future__ import annotations

import json
import logging
import pickle
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from engine.errors import EngineError, ModelNotTrainedError, QueryError
from engine.vqa.answer_head import VqaModel, VqaPrediction, fit_vqa
from engine.vqa.data import VqaFeatures, VqaItem, closed_options, normalise_answer, vqa_items

if TYPE_CHECKING:
    from PIL.Image import Image

    from engine.encoders.base import Encoder
    from engine.rag.base import Generator
    from kg.graph import ConceptGraph

logger = logging.getLogger(__name__)

MODEL_FILE = "model.pkl"
CARD_FILE = "card.json"
FORMAT_VERSION = 1
TRAIN_DATASETS: tuple[str, ...] = ("vqa-rad", "slake")
MAX_QUESTION_CHARS = 1000
_YES_NO_START = (
    "is ",
    "are ",
    "was ",
    "were ",
    "does ",
    "do ",
    "did ",
    "can ",
    "could ",
    "has ",
    "have ",
    "will ",
    "should ",
    "would ",
)


class VqaModelMissingError(ModelNotTrainedError):
    """No trained VQA model in this home: run `medsearch train vqa`."""


@dataclass(frozen=True)
class Answer:
    """One answer to a question about an image.

    answer: normalised short answer (yes/no, one of the question's options, or a short phrase).
    answer_type: "CLOSED" or "OPEN" as read from the question.
    confidence: the combined probability of the answer, in [0, 1].
    citations: the training pairs consulted: {qid, record_id, question, answer, similarity, supports}
        (similarity: the mean of the question cosine and the image cosine, in [-1, 1]; supports: the pair's
        answer is this answer; when no near pair agrees, the closest ones consulted are cited with False).
    facts: graph facts used: {head, relation, value, record_id, weight}.
    sentence: a phrased answer with [n] citations (only when a generator or template phrasing was asked).
    """

    qid: str
    question: str
    answer: str
    answer_type: str
    confidence: float
    citations: tuple[dict[str, Any], ...]
    facts: tuple[dict[str, Any], ...] = ()
    sentence: str | None = None
    phrased_by: str | None = None

    def as_dict(self) -> dict[str, Any]:
        out = {
            "qid": self.qid,
            "question": self.question,
            "answer": self.answer,
            "answer_type": self.answer_type,
            "confidence": round(self.confidence, 4),
            "citations": [c["record_id"] for c in self.citations],
            "evidence": list(self.citations),
            "facts": list(self.facts),
        }
        if self.sentence is not None:
            out["sentence"] = self.sentence
            out["phrased_by"] = self.phrased_by
        return out


@dataclass(frozen=True)
class Question:
    """One question to answer: its id, text and image (a PIL image, already decoded)."""

    qid: str
    question: str
    image: Image | None = None


@dataclass
class VqaService:
    """A fitted `VqaModel`, the answer-type classifier and the names of the encoders its features came from."""

    model: VqaModel
    type_classifier: Any
    encoder_names: dict[str, str]
    questions: dict[str, str] = field(default_factory=dict)  # training qid -> question text (for citations)
    card: dict[str, Any] = field(default_factory=dict)

    # ------------------------------------------------------------------ training and storage
    @classmethod
    def fit(
        cls,
        items: Sequence[VqaItem],
        text_encoder: Encoder,
        image_encoders: Mapping[str, Encoder],
        encoder_names: Mapping[str, str],
        *,
        graph: ConceptGraph | None = None,
        k: int = 10,
        seed: int = 0,
    ) -> VqaService:
        """Encode `items` and fit the answer head, retrieval weights, graph evidence and answer-type classifier."""
        from sklearn.linear_model import LogisticRegression

        from engine.vqa.data import encode_features

        if not items:
            raise QueryError("no training questions to fit the VQA model on")
        started = time.perf_counter()
        features = encode_features(items, text_encoder, dict(image_encoders))
        encoded = time.perf_counter() - started
        model = fit_vqa(items, features, k=k, seed=seed, graph=graph)
        types = np.array([item.answer_type for item in items])
        classifier = LogisticRegression(C=10.0, max_iter=500).fit(features.question, types)
        seconds = time.perf_counter() - started
        card = {
            "format_version": FORMAT_VERSION,
            "task": "visual question answering (closed and open), with retrieval and graph evidence",
            "data": {
                name: {
                    "questions": sum(1 for i in items if i.qid.startswith(f"{name}:")),
                    "images": len({i.record_id for i in items if i.qid.startswith(f"{name}:")}),
                }
                for name in sorted({i.qid.split(":", 1)[0] for i in items})
            },
            "splits": sorted({i.split for i in items}),
            "answers": len(model.vocabulary),
            "encoders": dict(encoder_names),
            "weights": model.weights,
            "graph": graph is not None,
            "k": k,
            "seed": seed,
            "seconds": {"encode": round(encoded, 1), "total": round(seconds, 1)},
            "answer_type_train_accuracy": round(float(classifier.score(features.question, types)), 4),
        }
        questions = {item.qid: item.question for item in items}
        logger.info(
            "VQA model: %d questions, %d answers, weights %s, %.0fs",
            len(items),
            len(model.vocabulary),
            model.weights,
            seconds,
        )
        return cls(model, classifier, dict(encoder_names), questions, card)

    def save(self, folder: Path) -> Path:
        """Write ``model.pkl`` and ``card.json`` atomically (a crash leaves the previous model whole)."""
        folder.mkdir(parents=True, exist_ok=True)
        payload = {
            "format_version": FORMAT_VERSION,
            "model": replace(self.model, graph=None),  # the graph is the engine's; reattached on load
            "entities": self.model.graph.entities if self.model.graph is not None else None,
            "type_classifier": self.type_classifier,
            "encoder_names": self.encoder_names,
            "questions": self.questions,
            "card": self.card,
        }
        temporary = folder / f".{MODEL_FILE}.tmp"
        with temporary.open("wb") as handle:
            pickle.dump(payload, handle, protocol=pickle.HIGHEST_PROTOCOL)
        temporary.replace(folder / MODEL_FILE)
        card_tmp = folder / f".{CARD_FILE}.tmp"
        card_tmp.write_text(json.dumps(self.card, indent=2))
        card_tmp.replace(folder / CARD_FILE)
        return folder

    @classmethod
    def load(
        cls, folder: Path, graph: ConceptGraph | Callable[[], ConceptGraph | None] | None = None
    ) -> VqaService:
        """Read a model saved by `save` (a file this medsearch home wrote: pickles are trusted local files).

        `graph` (or a function returning it, called only when the model was trained with graph facts) is
        reattached for knowledge questions; None leaves them to the head and retrieval.

        Raises:
            VqaModelMissingError: no model in `folder`.
            EngineError: the file is unreadable or from another format version.
        """
        from engine.vqa.graph_facts import GraphFacts

        path = folder / MODEL_FILE
        if not path.is_file():
            # the message may reach API clients: name the file relative to the home, never the absolute path
            raise VqaModelMissingError(
                f"no trained VQA model (models/{folder.name}/{MODEL_FILE} in the medsearch home): "
                "run `medsearch train vqa` first"
            )
        try:
            with path.open("rb") as handle:
                payload = pickle.load(handle)  # noqa: S301 - written by `save` in this home
        except (OSError, pickle.UnpicklingError, EOFError, AttributeError, ImportError) as e:
            raise EngineError(
                f"models/{folder.name}/{MODEL_FILE}: cannot read the VQA model ({type(e).__name__}); "
                "retrain with `medsearch train vqa --force`"
            ) from e
        if not isinstance(payload, dict) or payload.get("format_version") != FORMAT_VERSION:
            raise EngineError(
                f"models/{folder.name}/{MODEL_FILE}: not a VQA model of format {FORMAT_VERSION}; retrain with --force"
            )
        model: VqaModel = payload["model"]
        if callable(graph) and payload.get("entities") is not None:
            graph = graph()
        if graph is not None and not callable(graph) and payload.get("entities") is not None:
            model = replace(model, graph=GraphFacts(graph, payload["entities"]))
        else:
            model = replace(model, graph_weight=0.0)
        return cls(
            model, payload["type_classifier"], payload["encoder_names"], payload["questions"], payload["card"]
        )

    # ------------------------------------------------------------------ answering
    def answer_type(self, question: str, question_vector: np.ndarray) -> str:
        """CLOSED for "X or Y?" and yes/no-shaped questions, else the trained classifier's call."""
        text = question.strip().lower()
        if closed_options(question) is not None or text.startswith(_YES_NO_START):
            return "CLOSED"
        return str(self.type_classifier.predict(question_vector.reshape(1, -1))[0])

    def features(
        self, questions: Sequence[Question], text_encoder: Encoder, image_encoders: Mapping[str, Encoder]
    ) -> VqaFeatures:
        """Question embeddings and, for every space the model was trained with, image embeddings (zeros when a
        question has no image: retrieval then leans on the question)."""
        vectors = np.asarray(text_encoder.encode_texts([q.question for q in questions]), dtype=np.float32)
        images: dict[str, np.ndarray] = {}
        with_image = [i for i, q in enumerate(questions) if q.image is not None]
        for space in self.model.train_features.images:
            encoder = image_encoders.get(space)
            if encoder is None:
                raise QueryError(
                    f"the VQA model was trained with a {space!r} image encoder that this workspace does not have"
                )
            block = np.zeros((len(questions), encoder.dim), dtype=np.float32)
            if with_image:
                block[with_image] = encoder.encode_images([questions[i].image for i in with_image])
            images[space] = block
        return VqaFeatures(vectors, images)

    def answer(
        self,
        questions: Sequence[Question],
        text_encoder: Encoder,
        image_encoders: Mapping[str, Encoder],
        *,
        generator: Generator | None = None,
        phrase: bool = False,
    ) -> list[Answer]:
        """Answer every question (batched encodes); `phrase` adds a sentence with citations (by `generator`,
        checked, else a template)."""
        for q in questions:
            if not q.question or not q.question.strip():
                raise QueryError(f"question {q.qid!r} is empty")
            if len(q.question) > MAX_QUESTION_CHARS:
                raise QueryError(
                    f"question {q.qid!r} is {len(q.question)} characters (limit {MAX_QUESTION_CHARS})"
                )
        if not questions:
            return []
        features = self.features(questions, text_encoder, image_encoders)
        items = [
            VqaItem(
                qid=q.qid,
                record_id="",
                image_path="",
                question=q.question.strip(),
                answer="",
                answer_type=self.answer_type(q.question, features.question[row]),
                split="query",
            )
            for row, q in enumerate(questions)
        ]
        predictions = self.model.predict(items, features)
        return [
            self._answer(item, prediction, generator if phrase else None, phrase, question.image)
            for item, prediction, question in zip(items, predictions, questions, strict=True)
        ]

    def _answer(
        self,
        item: VqaItem,
        prediction: VqaPrediction,
        generator: Generator | None,
        phrase: bool,
        image: Image | None = None,
    ) -> Answer:
        # the kNN ranks by question cosine + mean image cosine; report their mean, in [-1, 1]
        scale = 2.0 if self.model.train_features.images else 1.0
        citations = tuple(
            {
                "qid": c.qid,
                "record_id": c.record_id,
                "question": self.questions.get(c.qid, ""),
                "answer": c.answer,
                "similarity": round(c.similarity / scale, 4),
                "supports": c.answer == prediction.answer,
            }
            for c in prediction.citations
        )
        facts = tuple(f.as_dict() for f in prediction.facts)
        answer = Answer(
            item.qid,
            item.question,
            prediction.answer,
            item.answer_type,
            prediction.confidence,
            citations,
            facts,
        )
        if not phrase:
            return answer
        sentence, phrased_by = phrase_answer(answer, generator, image)
        return replace(answer, sentence=sentence, phrased_by=phrased_by)


def evidence_lines(answer: Answer) -> tuple[list[str], list[str]]:
    """The numbered context (cited training pairs) and the facts, as the generator sees them."""
    contexts = [
        f"Similar case {c['record_id']}: Q: {c['question']} A: {c['answer']}" for c in answer.citations
    ]
    facts = [f"{f['head']} {f['relation'].replace('_', ' ')}: {f['value']}" for f in answer.facts]
    return contexts, facts


def template_sentence(answer: Answer) -> str:
    """A sentence that states the decided answer and cites its evidence, without a language model: the cases
    that gave the same answer, or, when none of the nearest did, the cases consulted, said to differ."""
    shown = answer.citations[:3]
    marks = "".join(f"[{n}]" for n in range(1, len(shown) + 1))
    text = f"{answer.answer.capitalize()}"
    if answer.facts:
        fact = answer.facts[0]
        text += f" ({fact['head']}: {fact['relation'].replace('_', ' ')})"
    if marks and all(c.get("supports", True) for c in shown):
        text += f", as in the most similar prior cases {marks}"
    elif marks:
        text += f"; the most similar prior cases {marks} answered otherwise"
    return text + "."


def states_answer(text: str, answer: str) -> bool:
    """Whether `text` states `answer`: its words appear as whole words, and for yes / no the opposite word does
    not ("no" is not found in "nodule"; "Yes, ... no ..." does not state "no")."""
    wanted = normalise_answer(answer)
    words = normalise_answer(text).split()
    if not wanted or not words:
        return False
    if wanted in ("yes", "no") and ("no" if wanted == "yes" else "yes") in words:
        return False
    size = len(wanted.split())
    return any(" ".join(words[i : i + size]) == wanted for i in range(len(words) - size + 1))


def phrase_answer(answer: Answer, generator: Generator | None, image: Image | None = None) -> tuple[str, str]:
    """(sentence, who phrased it). The generator (given the image when there is one) must state the decided
    answer (`states_answer`) and cite at least one numbered case that exists; otherwise, or when it fails, the
    template sentence is returned."""
    from engine.rag.prompts import Context, build_messages, parse_citations

    if generator is None:
        return template_sentence(answer), "template"
    contexts, facts = evidence_lines(answer)
    messages = build_messages(
        f"{answer.question} (The evidence says the answer is: {answer.answer}.)",
        [
            Context(c["record_id"], text, c["similarity"])
            for c, text in zip(answer.citations, contexts, strict=True)
        ],
        facts,
        task="vqa",
    )
    try:
        text = generator.generate(
            messages, max_tokens=60, images=[image] if image is not None else None
        ).strip()
    except (
        Exception
    ) as e:  # any generator failure (server, model, template) leaves the decided answer standing
        logger.warning("generator failed (%s: %s): template sentence used", type(e).__name__, e)
        return template_sentence(answer), "template"
    cited = parse_citations(text, len(answer.citations))
    if states_answer(text, answer.answer) and cited:
        return text, getattr(generator, "name", type(generator).__name__)
    logger.info("generator sentence %r lacks the answer or a citation: template sentence used", text[:120])
    return template_sentence(answer), "template"


def training_items(data_dir: Path, datasets: Sequence[str] = TRAIN_DATASETS) -> list[VqaItem]:
    """The train-split questions of VQA-RAD and SLAKE (validation and test are never trained on)."""
    from engine.datasets import load

    items: list[VqaItem] = []
    for name in datasets:
        folder = data_dir / name
        if not folder.is_dir():
            logger.warning("%s not found: VQA model trained without %s", folder, name)
            continue
        items.extend(item for item in vqa_items(load(name, folder), name) if item.split == "train")
    return items
