"""Gradio web app, mounted at /ui by `ui.api.create_app`: a search tab and a collection statistics tab.

Handlers call the same engine as the API (`EngineHandle.use()`, `ui.api.queries.run_search`) and only format:
image hits show their image, report hits a rendered text card; a details panel shows the selected hit's text,
its concepts (negated ones struck through) and why it was found.
"""

from __future__ import annotations

import html
import logging
import re
import textwrap
from collections.abc import Mapping, Sequence
from typing import Any

import gradio as gr
from PIL import Image, ImageDraw, ImageFont
from pydantic import ValidationError

from engine.errors import MEDSEARCH_ERRORS
from engine.ingest import load_image
from engine.records import facet_counts
from ui.api.deps import open_collection
from ui.api.engine import EngineBusyError, EngineHandle, EngineNotStartedError
from ui.api.errors import UnknownCollectionError
from ui.api.models import SearchQuery
from ui.api.queries import run_search
from ui.web_kg import build_kg_tab
from ui.web_rag import build_ask_tab, build_report_tab

logger = logging.getLogger(__name__)

THUMBNAIL = (320, 320)
MODES = ["hybrid", "dense", "keyword"]
USER_ERRORS = (*MEDSEARCH_ERRORS, UnknownCollectionError, EngineBusyError, EngineNotStartedError)
WEB_CSS = """
mark.mention {background:#dbeafe; padding:0 2px; border-radius:3px}
mark.mention.negated {background:#fee2e2; text-decoration:line-through}
mark.mention.uncertain {background:#fef9c3; font-style:italic}
.chip {display:inline-block; padding:1px 9px; margin:2px 3px; border-radius:11px; font-size:0.85em;
       background:#dbeafe; color:#1e3a8a}
.chip.negated {background:#fee2e2; color:#991b1b; text-decoration:line-through}
.chip.uncertain {background:#fef3c7; color:#92400e}
.why-table {border-collapse:collapse; margin:6px 0}
.why-table td, .why-table th {padding:2px 10px; border-bottom:1px solid #e5e7eb; text-align:left}
.hit-text {white-space:pre-wrap; max-height:22em; overflow:auto; font-size:0.9em}
"""


def web_theme() -> gr.themes.Base:
    """A theme with local fonts only (the app works offline)."""
    return gr.themes.Soft(font=["system-ui", "sans-serif"], font_mono=["ui-monospace", "monospace"])


# ---------------------------------------------------------------------- formatting
def _snippet(text: str, limit: int) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def text_card(hit: Mapping[str, Any]) -> Image.Image:
    """A thumbnail-sized card for a hit without an image: its kind, source and the start of its text."""
    card = Image.new("RGB", THUMBNAIL, "#f8fafc")
    draw = ImageDraw.Draw(card)
    draw.rectangle([0, 0, THUMBNAIL[0] - 1, THUMBNAIL[1] - 1], outline="#94a3b8", width=2)
    title_font, body_font = ImageFont.load_default(size=17), ImageFont.load_default(size=14)
    draw.text((14, 12), f"{hit['kind']} · {hit['source']}", fill="#1e3a8a", font=title_font)
    lines = textwrap.wrap(_snippet(hit["text"], 400), width=36)[:14]
    draw.multiline_text((14, 44), "\n".join(lines), fill="#0f172a", font=body_font, spacing=4)
    return card


def thumbnail(hit: Mapping[str, Any]) -> Image.Image:
    """The hit's image scaled down (a text card when it has none or it cannot be read)."""
    if hit.get("image_path"):
        try:
            image = load_image(hit["image_path"])
            image.thumbnail(THUMBNAIL)
            return image
        except MEDSEARCH_ERRORS as e:
            logger.warning("no thumbnail for %s: %s", hit["id"], e)
    return text_card(hit)


def caption(rank: int, hit: Mapping[str, Any]) -> str:
    return f"{rank}. {hit['id']} · {hit['score']:.3f} · {_snippet(hit['text'], 70)}"


def concept_chips(concepts: Sequence[Mapping[str, Any]]) -> str:
    """HTML chips, one per (concept, polarity); negated concepts are struck through and say so."""
    chips, seen = [], set()
    for concept in concepts:
        label = str(concept.get("name") or concept.get("concept_id") or concept.get("id") or "?")
        polarity = (
            "negated"
            if concept.get("negated")
            else "uncertain"
            if concept.get("uncertain")
            else str(concept.get("polarity") or "present")
        )
        if (label, polarity) in seen:
            continue
        seen.add((label, polarity))
        css = {"negated": "chip negated", "uncertain": "chip uncertain"}.get(polarity, "chip")
        title = html.escape(f"{concept.get('concept_id') or concept.get('id') or label} ({polarity})")
        prefix = "no " if polarity == "negated" else "? " if polarity == "uncertain" else ""
        chips.append(f'<span class="{css}" title="{title}">{prefix}{html.escape(label)}</span>')
    return "".join(chips) or "<em>no linked concepts</em>"


def _highlight(text: str, terms: Sequence[str]) -> str:
    escaped = html.escape(text)
    if not terms:
        return escaped
    pattern = re.compile(r"\b(" + "|".join(re.escape(html.escape(t)) for t in terms) + r")\b", re.IGNORECASE)
    return pattern.sub(r"<mark>\1</mark>", escaped)


def hit_details(rank: int, hit: Mapping[str, Any]) -> str:
    """The details panel of one hit: metadata, concepts, why (rankers, ranks, scores, words), full text."""
    why = hit["why"]
    meta = " · ".join(str(v) for v in (hit["kind"], hit["source"], hit["modality"], hit["body_part"]) if v)
    rows = "".join(
        f"<tr><td>{html.escape(name)}</td><td>#{rank_}</td><td>{why['scores'].get(name, 0):.4f}</td></tr>"
        for name, rank_ in why["ranks"].items()
    )
    terms = ", ".join(html.escape(t) for t in why["matched_terms"]) or "none"
    return (
        f'<div class="hit-details"><h3>{rank}. {html.escape(hit["id"])} — score {hit["score"]:.4f}</h3>'
        f"<p>{html.escape(meta)}</p><p><b>Concepts:</b> {concept_chips(hit['concepts'])}</p>"
        f"<p><b>Why:</b> spaces {html.escape(', '.join(why['spaces']) or 'none (keyword only)')}; "
        f"matched words: {terms}</p>"
        f'<table class="why-table"><tr><th>ranker</th><th>rank</th><th>raw score</th></tr>{rows}</table>'
        f'<div class="hit-text">{_highlight(hit["text"], why["matched_terms"])}</div></div>'
    )


def _count_table(title: str, counts: Mapping[str, int]) -> str:
    if not counts:
        return f"**{title}:** none\n"
    rows = "\n".join(f"| {html.escape(str(value))} | {count} |" for value, count in counts.items())
    return f"| {title} | records |\n|---|---|\n{rows}\n"


def stats_markdown(stats: Mapping[str, Any], facets: Mapping[str, Mapping[str, int]]) -> str:
    """A collection's statistics (counts per space, source, kind, modality, body part) as Markdown."""
    spaces = "\n".join(
        f"| {space} | {info['encoder']} | {info['dim']} | {stats['vectors'].get(space, 0)} |"
        for space, info in stats["spaces"].items()
    )
    parts = [
        f"### {stats['name']}\n\n**{stats['records']}** records · backend `{stats['backend']}`\n",
        f"| space | encoder | dim | vectors |\n|---|---|---|---|\n{spaces}\n"
        if spaces
        else "no vector spaces\n",
        _count_table("source", stats["by_source"]),
        _count_table("kind", stats["by_kind"]),
        _count_table("modality", facets.get("modality", {})),
        _count_table("body part", facets.get("body_part", {})),
    ]
    return "\n".join(parts)


def _choices(counts: Mapping[str, int]) -> list[tuple[str, str]]:
    return [(f"{value} ({count})", value) for value, count in counts.items()]


def _error(message: object) -> str:
    return f"**Error:** {html.escape(str(message))}"


# ---------------------------------------------------------------------- handlers
class WebHandlers:
    """The web app's event handlers over one engine (methods are Gradio callbacks)."""

    def __init__(self, engine: EngineHandle) -> None:
        self.engine = engine

    def collection_names(self) -> tuple[list[str], str | None]:
        with self.engine.read() as workspace:
            names = workspace.collection_names()
        default = self.engine.settings.collection
        return names, default if default in names else (names[0] if names else None)

    def facets(self, name: str | None) -> dict[str, dict[str, int]]:
        if not name:
            return {}
        with self.engine.read() as workspace:
            return facet_counts(open_collection(workspace, name), ("modality", "body_part"))

    def load(self) -> tuple[Any, ...]:
        """Page load: collection choices, their filter values and the statistics of the default one."""
        try:
            names, chosen = self.collection_names()
            facets = self.facets(chosen)
            stats = self.stats(chosen)
        except USER_ERRORS as e:
            names, chosen, facets, stats = [], None, {}, _error(e)
        return (
            gr.Dropdown(choices=names, value=chosen),
            gr.Dropdown(choices=_choices(facets.get("modality", {})), value=[]),
            gr.Dropdown(choices=_choices(facets.get("body_part", {})), value=[]),
            gr.Dropdown(choices=names, value=chosen),
            stats,
        )

    def collection_changed(self, name: str | None) -> tuple[Any, Any]:
        try:
            facets = self.facets(name)
        except USER_ERRORS:
            facets = {}
        return (
            gr.Dropdown(choices=_choices(facets.get("modality", {})), value=[]),
            gr.Dropdown(choices=_choices(facets.get("body_part", {})), value=[]),
        )

    def search(
        self,
        text: str,
        image_path: str | None,
        collection: str | None,
        modalities: list[str] | None,
        body_parts: list[str] | None,
        k: float,
        mode: str,
    ) -> tuple[list[tuple[Image.Image, str]], str, list[dict[str, Any]], str]:
        """-> (gallery items, status line, hits as dicts, details panel)."""
        filters = {
            name: values for name, values in (("modality", modalities), ("body_part", body_parts)) if values
        }
        try:
            query = SearchQuery(
                text=text.strip() or None, k=int(k), mode=mode, filters=filters or None, collection=collection
            )
            image = load_image(image_path) if image_path else None
            with self.engine.read() as workspace:
                page = run_search(workspace, query, image)
        except ValidationError as e:
            return [], _error("; ".join(err["msg"] for err in e.errors())), [], ""
        except USER_ERRORS as e:
            return [], _error(e), [], ""
        hits = [hit.to_dict() for hit in page.hits]
        gallery = [(thumbnail(hit), caption(rank, hit)) for rank, hit in enumerate(hits, start=1)]
        what = " + ".join(
            x for x in (f"“{_snippet(text, 60)}”" if text.strip() else "", "image" if image else "") if x
        )
        status = f"{len(hits)} results for {html.escape(what)} in `{page.collection}` ({page.took_ms:.0f} ms)"
        details = hit_details(1, hits[0]) if hits else ""
        return gallery, status if hits else f"No results for {html.escape(what)}.", hits, details

    @staticmethod
    def select(hits: list[dict[str, Any]], event: gr.SelectData) -> str:
        index = event.index if isinstance(event.index, int) else 0
        return hit_details(index + 1, hits[index]) if 0 <= index < len(hits) else ""

    def stats(self, name: str | None) -> str:
        if not name:
            return "No collections yet: ingest one (`medsearch ingest ...` or `POST /ingest`)."
        try:
            with self.engine.read() as workspace:
                collection = open_collection(workspace, name)
                return stats_markdown(collection.stats(), facet_counts(collection))
        except USER_ERRORS as e:
            return _error(e)


# ---------------------------------------------------------------------- layout
def build_web(engine: EngineHandle) -> gr.Blocks:
    """The Blocks app; mount it with `gr.mount_gradio_app` (see `ui.api.app`)."""
    handlers = WebHandlers(engine)
    with gr.Blocks(title="medsearch", analytics_enabled=False) as demo:
        gr.Markdown("## medsearch · medical image and report search")
        hits = gr.State([])
        with gr.Tab("Search", id="search"):
            with gr.Row():
                with gr.Column(scale=1, min_width=300):
                    text = gr.Textbox(
                        label="Query text", placeholder="e.g. brain hemorrhage", lines=2, elem_id="query-text"
                    )
                    image = gr.Image(
                        label="Query image (optional)",
                        type="filepath",
                        sources=["upload"],
                        height=200,
                        elem_id="query-image",
                    )
                    collection = gr.Dropdown(label="Collection", choices=[], elem_id="collection")
                    modality = gr.Dropdown(label="Modality", choices=[], multiselect=True, elem_id="modality")
                    body_part = gr.Dropdown(
                        label="Body part", choices=[], multiselect=True, elem_id="body-part"
                    )
                    k = gr.Slider(1, 50, value=12, step=1, label="Results (k)", elem_id="k")
                    mode = gr.Radio(MODES, value="hybrid", label="Mode", elem_id="mode")
                    button = gr.Button("Search", variant="primary", elem_id="search-button")
                with gr.Column(scale=3):
                    status = gr.Markdown(elem_id="search-status")
                    gallery = gr.Gallery(
                        label="Results",
                        columns=4,
                        height="auto",
                        object_fit="contain",
                        allow_preview=False,
                        elem_id="results",
                    )
                    details = gr.HTML(elem_id="hit-details")
        build_ask_tab(engine, USER_ERRORS)
        build_report_tab(engine, USER_ERRORS)
        build_kg_tab(engine, USER_ERRORS)
        with gr.Tab("Collection statistics", id="stats"):
            stats_collection = gr.Dropdown(label="Collection", choices=[], elem_id="stats-collection")
            stats = gr.Markdown(elem_id="collection-stats")

        inputs = [text, image, collection, modality, body_part, k, mode]
        outputs = [gallery, status, hits, details]
        button.click(handlers.search, inputs, outputs)
        text.submit(handlers.search, inputs, outputs)
        gallery.select(handlers.select, [hits], details)
        collection.change(handlers.collection_changed, collection, [modality, body_part])
        stats_collection.change(handlers.stats, stats_collection, stats)
        demo.load(handlers.load, None, [collection, modality, body_part, stats_collection, stats])
    return demo
