"""The web app's knowledge-graph tab: look a concept up (card + neighbourhood plot) and link a text."""

from __future__ import annotations

import html
from collections.abc import Mapping
from typing import Any

import gradio as gr

from engine.knowledge import concept_card, mentions_as_dicts
from ui.api.engine import EngineHandle

NEIGHBOURS = 8  # children and relations drawn around the concept


def card_markdown(card: Mapping[str, Any]) -> str:
    """A concept card as Markdown (names, ids, hierarchy, relations, linked records by polarity)."""
    lines = [
        f"### {card['name']}  `{card['id']}`",
        f"*{card['semantic_type']}* · sources: {', '.join(card['sources'])}",
    ]
    if card["definition"]:
        lines.append(f"> {card['definition']}")
    for label in ("synonyms", "xrefs"):
        if card[label]:
            lines.append(f"**{label.title()}:** {'; '.join(card[label][:20])}")
    for label in ("parents", "children"):
        if card[label]:
            lines.append(
                f"**{label.title()}:** " + "; ".join(f"{c['name']} (`{c['id']}`)" for c in card[label])
            )
    for relation in card["related"]:
        lines.append(f"- {relation['relation']}: {relation['name']}")
    for polarity, found in card["records"].items():
        if found["count"]:
            lines.append(f"**Records ({polarity}):** {found['count']} — {', '.join(found['ids'][:10])}")
    return "\n\n".join(lines)


def neighbourhood_figure(card: Mapping[str, Any]) -> Any:
    """A matplotlib figure: the concept in the middle, parents above, children below, relations around."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import networkx as nx

    view = nx.DiGraph()
    center = card["name"]
    view.add_node(center)
    for parent in card["parents"][:NEIGHBOURS]:
        view.add_edge(center, parent["name"], label="is_a")
    for child in card["children"][:NEIGHBOURS]:
        view.add_edge(child["name"], center, label="is_a")
    for relation in card["related"][:NEIGHBOURS]:
        view.add_edge(center, relation["name"][:40], label=relation["relation"])
    figure, axis = plt.subplots(figsize=(8, 5.5))
    layout = nx.spring_layout(view, seed=1, k=1.2)
    colours = ["#f4a261" if node == center else "#cfe3f3" for node in view.nodes]
    nx.draw_networkx(view, layout, ax=axis, node_color=colours, node_size=500, font_size=7, arrowsize=10)
    nx.draw_networkx_edge_labels(
        view, layout, edge_labels=nx.get_edge_attributes(view, "label"), font_size=6, ax=axis
    )
    axis.set_axis_off()
    figure.tight_layout()
    return figure


def mentions_html(text: str, mentions: list[dict[str, Any]]) -> str:
    """The text with each mention marked: negated struck through, uncertain in italics."""
    out, position = [], 0
    for m in mentions:
        out.append(html.escape(text[position : m["start"]]))
        style = "negated" if m["negated"] else "uncertain" if m["uncertain"] else "present"
        title = html.escape(f"{m['name']} ({m['concept_id']}) {style}")
        out.append(
            f'<mark class="mention {style}" title="{title}">{html.escape(text[m["start"] : m["end"]])}</mark>'
        )
        position = m["end"]
    out.append(html.escape(text[position:]))
    return '<div id="kg-linked">' + "".join(out) + "</div>"


class KnowledgeHandlers:
    """Callbacks of the knowledge-graph tab."""

    def __init__(self, engine: EngineHandle, errors: tuple[type[Exception], ...]) -> None:
        self.engine = engine
        self.errors = errors

    def lookup(self, query: str) -> tuple[str, Any]:
        if not query or not query.strip():
            return "Type a concept name, synonym or id (e.g. *enlarged heart*, `DOID:1673`).", None
        try:
            with self.engine.read() as workspace:
                knowledge = workspace.knowledge()
                if knowledge is None:
                    return "**Error:** the knowledge graph is disabled on this server.", None
                concept = knowledge.graph.concept(query.strip())
                name = workspace.settings.collection
                linked = {}
                if name in workspace.collection_names():
                    linked = workspace.collection(name).records_mentioning([concept.id])
                card = concept_card(knowledge, concept.id, linked)
        except self.errors as e:
            return f"**Error:** {html.escape(str(e))}", None
        return card_markdown(card), neighbourhood_figure(card)

    def link(self, text: str) -> str:
        if not text or not text.strip():
            return ""
        try:
            with self.engine.read() as workspace:
                knowledge = workspace.knowledge()
                mentions = mentions_as_dicts(knowledge.linker.link(text)) if knowledge else []
        except self.errors as e:
            return f"<b>Error:</b> {html.escape(str(e))}"
        return mentions_html(text, mentions)


def build_kg_tab(engine: EngineHandle, errors: tuple[type[Exception], ...]) -> None:
    """Add the tab to the enclosing `gr.Blocks`."""
    handlers = KnowledgeHandlers(engine, errors)
    with gr.Tab("Knowledge graph", id="kg"):
        with gr.Row():
            with gr.Column(scale=2):
                query = gr.Textbox(label="Concept", placeholder="e.g. enlarged heart", elem_id="kg-query")
                button = gr.Button("Look up", variant="primary", elem_id="kg-button")
                card = gr.Markdown(elem_id="kg-card")
            with gr.Column(scale=3):
                plot = gr.Plot(label="Neighbourhood", elem_id="kg-plot")
        text = gr.Textbox(
            label="Link a report text (negated mentions struck through, uncertain in italics)",
            lines=3,
            elem_id="kg-text",
        )
        linked = gr.HTML(elem_id="kg-linked-out")
        button.click(handlers.lookup, query, [card, plot])
        query.submit(handlers.lookup, query, [card, plot])
        text.submit(handlers.link, text, linked)
        text.blur(handlers.link, text, linked)
