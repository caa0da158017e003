"""The web app's Ask and Report tabs: a question about an image, answered by the trained VQA model, and a
report drafted from similar prior cases; the cited cases shown as thumbnails, graph facts listed (the same
engine calls as `POST /ask` and `POST /report`)."""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from typing import Any

import gradio as gr
from PIL import Image

from engine.errors import MEDSEARCH_ERRORS
from engine.ingest import load_image
from engine.vqa.service import Answer, Question
from ui.api.engine import EngineHandle

THUMBNAIL = (240, 240)


def answer_markdown(answer: Answer) -> str:
    """The answer, its confidence and type, the phrased sentence and the graph facts, as Markdown."""
    lines = [
        f"### {html.escape(answer.answer)}",
        f"confidence **{answer.confidence:.2f}** · {answer.answer_type.lower()} question · "
        f"{len(answer.citations)} cited case(s)",
    ]
    if answer.sentence:
        lines.append(f"> {html.escape(answer.sentence)}  \n*phrased by {answer.phrased_by}*")
    if answer.facts:
        lines.append("**Graph facts used:**")
        lines += [
            f"- {html.escape(f['head'])} — {f['relation'].replace('_', ' ')} → {html.escape(f['value'])} "
            f"(via `{f['record_id']}`)"
            for f in answer.facts
        ]
    return "\n\n".join(lines)


def citation_gallery(
    cited: Sequence[tuple[str, str]], records: Mapping[str, Any]
) -> list[tuple[Image.Image, str]]:
    """(thumbnail, caption) for each (record id, caption) whose record the collection holds with a readable
    image; the others are left out (the Markdown beside the gallery still lists them)."""
    items = []
    for record_id, caption in cited:
        record = records.get(record_id)
        if record is None or not record.image_path:
            continue
        try:
            image = load_image(record.image_path)
        except (*MEDSEARCH_ERRORS, OSError):  # a missing thumbnail must not hide the answer
            continue
        image.thumbnail(THUMBNAIL)
        items.append((image, caption))
    return items


class AskHandlers:
    def __init__(self, engine: EngineHandle, errors: tuple[type[Exception], ...]) -> None:
        self.engine = engine
        self.errors = errors

    def ask(self, image_path: str | None, question: str, phrase: bool) -> tuple[str, list[Any]]:
        if not question or not question.strip():
            return "**Error:** type a question about the image.", []
        try:
            image = load_image(image_path) if image_path else None
            with self.engine.read() as workspace:
                answer = workspace.ask(
                    [Question("web", question.strip(), image)],
                    generator=workspace.settings.generator if phrase else None,
                    phrase=phrase,
                )[0]
                name = workspace.settings.collection
                records = (
                    workspace.collection(name).get_many([c["record_id"] for c in answer.citations])
                    if name in workspace.collection_names()
                    else {}
                )
        except self.errors as e:
            return f"**Error:** {html.escape(str(e))}", []
        cited = [
            (
                c["record_id"],
                f"[{number}] {c['record_id']} · Q: {c['question']} · A: {c['answer']} ({c['similarity']:.2f})",
            )
            for number, c in enumerate(answer.citations, start=1)
        ]
        return answer_markdown(answer), citation_gallery(cited, records)


def build_ask_tab(engine: EngineHandle, errors: tuple[type[Exception], ...]) -> None:
    """Add the Ask tab to the enclosing `gr.Blocks`."""
    handlers = AskHandlers(engine, errors)
    with gr.Tab("Ask", id="ask"):
        with gr.Row():
            with gr.Column(scale=1, min_width=300):
                image = gr.Image(
                    label="Image", type="filepath", sources=["upload"], height=220, elem_id="ask-image"
                )
                question = gr.Textbox(
                    label="Question", placeholder="e.g. Is there a pleural effusion?", elem_id="ask-question"
                )
                phrase = gr.Checkbox(
                    label="Phrase a sentence with citations", value=False, elem_id="ask-phrase"
                )
                button = gr.Button("Ask", variant="primary", elem_id="ask-button")
            with gr.Column(scale=2):
                answer = gr.Markdown(elem_id="ask-answer")
                cases = gr.Gallery(
                    label="Cited cases",
                    columns=3,
                    height="auto",
                    object_fit="contain",
                    allow_preview=False,
                    elem_id="ask-cases",
                )
        button.click(handlers.ask, [image, question, phrase], [answer, cases])
        question.submit(handlers.ask, [image, question, phrase], [answer, cases])


def report_markdown(draft: Mapping[str, Any]) -> str:
    """A drafted report as Markdown: FINDINGS, IMPRESSION (with [n] citations), the cases, facts and phrasing."""
    lines = [
        f"**FINDINGS:** {html.escape(draft['findings'])}",
        f"**IMPRESSION:** {html.escape(draft['impression'])}",
        "**Cited cases:**",
    ]
    lines += [
        f"{c['number']}. `{c['record_id']}` (case {html.escape(c['case_id'])}, similarity {c['similarity']:.2f})"
        for c in draft["citations"]
    ]
    if draft["facts"]:
        lines.append("**Graph facts:** " + "; ".join(html.escape(f) for f in draft["facts"]))
    phrasing = draft["phrasing"]
    note = f"*drafted by {phrasing.get('method', 'extractive')}"
    if phrasing.get("fallback_reason"):
        note += f" (the generator's text was not used: {html.escape(str(phrasing['fallback_reason']))})"
    lines.append(note + " · a retrieval-based draft for a radiologist to edit, not a diagnosis*")
    return "\n\n".join(lines)


class ReportHandlers:
    def __init__(self, engine: EngineHandle, errors: tuple[type[Exception], ...]) -> None:
        self.engine = engine
        self.errors = errors

    def draft(self, image_path: str | None, indication: str, k: float) -> tuple[str, list[Any]]:
        from engine.rag.report import draft_report

        if not image_path and not (indication or "").strip():
            return "**Error:** upload an image, type an indication, or both.", []
        try:
            image = load_image(image_path) if image_path else None
            with self.engine.read() as workspace:
                name = workspace.settings.collection
                draft = draft_report(
                    workspace, image, indication or None, collection=name, k=int(k)
                ).as_dict()
                records = workspace.collection(name).get_many([c["record_id"] for c in draft["citations"]])
        except self.errors as e:
            return f"**Error:** {html.escape(str(e))}", []
        cited = [
            (
                c["record_id"],
                f"[{c['number']}] {c['record_id']} · case {c['case_id']} ({c['similarity']:.2f})",
            )
            for c in draft["citations"]
        ]
        return report_markdown(draft), citation_gallery(cited, records)


def build_report_tab(engine: EngineHandle, errors: tuple[type[Exception], ...]) -> None:
    """Add the Report tab to the enclosing `gr.Blocks`."""
    handlers = ReportHandlers(engine, errors)
    with gr.Tab("Report", id="report"):
        with gr.Row():
            with gr.Column(scale=1, min_width=300):
                image = gr.Image(
                    label="Study image",
                    type="filepath",
                    sources=["upload"],
                    height=220,
                    elem_id="report-image",
                )
                indication = gr.Textbox(label="Indication (optional)", lines=2, elem_id="report-indication")
                k = gr.Slider(1, 10, value=5, step=1, label="Similar cases", elem_id="report-k")
                button = gr.Button("Draft report", variant="primary", elem_id="report-button")
            with gr.Column(scale=2):
                draft = gr.Markdown(elem_id="report-draft")
                cases = gr.Gallery(
                    label="Cited cases", columns=3, height="auto", object_fit="contain", allow_preview=False,
                    elem_id="report-cases",
                )  # fmt: skip
        button.click(handlers.draft, [image, indication, k], [draft, cases])
