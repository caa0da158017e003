"""Report drafting: a query image (and/or indication) -> FINDINGS and IMPRESSION, every sentence cited.

Retrieval decides, the generator only phrases (design.md). `ReportDrafter.draft` retrieves similar cases
(`engine.rag.case_retrieval`), keeps those of one body region (or the case itself when the query image is
already indexed: `coherent_subset`), composes a consensus draft from their findings and diagnoses
(`engine.rag.consensus`), each sentence tagged [n] with the case it was copied from, and adds graph facts
about the impression's concepts. Given a `Generator`, it asks it to rephrase the draft with the same citations
and keeps the rephrasing only if every citation refers to a retrieved case, none of the draft's citations is
dropped and every sentence carries one; otherwise the extractive draft stands and `phrasing` says why.

    drafter = ReportDrafter.from_workspace(workspace, "medpix")
    draft = drafter.draft(image, indication="headache", k=5)
    print(draft.text); json.dumps(draft.as_dict())
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from engine.errors import QueryError
from engine.rag.case_retrieval import CaseRetriever, SearchCaseRetriever
from engine.rag.consensus import (
    CaseNeighbour,
    ConceptLinker,
    DraftSentence,
    coherent_subset,
    compose_findings,
    compose_impression,
    split_sentences,
)
from engine.rag.prompts import Context, build_messages

if TYPE_CHECKING:
    from PIL.Image import Image

    from engine.knowledge import Knowledge
    from engine.rag.base import Generator
    from engine.workspace import Workspace

logger = logging.getLogger(__name__)

_CITATION = re.compile(r"\[(\d+)\]")
_IMPRESSION = re.compile(r"\bIMPRESSION\s*:", re.IGNORECASE)
_FINDINGS = re.compile(r"\bFINDINGS\s*:", re.IGNORECASE)
_TRAILING_CITATIONS = re.compile(r"([.!?])\s*((?:\[\d+\]\s*)+)")
MAX_FACTS = 5


@dataclass(frozen=True)
class Citation:
    """A retrieved case as cited by a draft: [number] -> record, case, similarity, the draft's sentences from it."""

    number: int
    record_id: str
    case_id: str
    similarity: float
    source: str
    sentences: tuple[str, ...] = ()


@dataclass(frozen=True)
class ReportDraft:
    """A drafted report. `findings` / `impression` carry [n] tags; `sentences` the extractive draft's parts;
    `citations` every retrieved case ([n] = citations[n-1]); `phrasing` records who phrased the text:
    {"method": "extractive" | "generator", "generator": name | None, "fallback_reason": str | None}."""

    findings: str
    impression: str
    sentences: tuple[DraftSentence, ...]
    citations: tuple[Citation, ...]
    facts: tuple[str, ...] = ()
    indication: str | None = None
    query: str = "image"  # "image", "text" or "image+text"
    phrasing: dict[str, Any] = field(default_factory=lambda: {"method": "extractive"})

    @property
    def text(self) -> str:
        """ "FINDINGS: ...\\n\\nIMPRESSION: ..." with citations."""
        return f"FINDINGS: {self.findings}\n\nIMPRESSION: {self.impression}"

    def plain_text(self) -> str:
        """Findings and impression without citation marks (what metrics compare)."""
        return " ".join(_CITATION.sub("", f"{self.findings} {self.impression}").split())

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready: findings, impression, text, sentences, citations, facts, query, indication, phrasing."""
        return {
            "findings": self.findings,
            "impression": self.impression,
            "text": self.text,
            "sentences": [
                {
                    "text": s.text,
                    "section": s.section,
                    "citation": s.citation,
                    "support": s.support,
                    "supporters": list(s.supporters),
                }
                for s in self.sentences
            ],
            "citations": [
                {
                    "number": c.number,
                    "record_id": c.record_id,
                    "case_id": c.case_id,
                    "similarity": round(c.similarity, 6),
                    "source": c.source,
                    "sentences": list(c.sentences),
                }
                for c in self.citations
            ],
            "facts": list(self.facts),
            "query": self.query,
            "indication": self.indication,
            "phrasing": dict(self.phrasing),
        }


def linker_of(knowledge: Knowledge) -> ConceptLinker:
    """A `ConceptLinker` over the knowledge graph's linker: text -> [(concept id, polarity)]."""
    return lambda text: [(m.concept_id, m.polarity) for m in knowledge.linker.link(text)]


def _renumber(sentence: DraftSentence, kept: Sequence[int]) -> DraftSentence:
    """Map a sentence's citations from positions in the composed subset to [n] over all retrieved cases."""
    return replace(
        sentence,
        citation=kept[sentence.citation - 1] + 1,
        supporters=tuple(kept[n - 1] + 1 for n in sentence.supporters),
    )


def _tagged(sentences: Sequence[DraftSentence]) -> str:
    """ "First sentence [1]. Second one [3]." (the citation inside the sentence it supports)."""
    out = []
    for sentence in sentences:
        text = " ".join(sentence.text.split())
        end = text[-1] if text[-1:] in ".!?" else "."
        out.append(f"{text.rstrip('.!? ')} [{sentence.citation}]{end}")
    return " ".join(out)


class ReportDrafter:
    """Drafts reports from a case retriever (see the module docstring).

    Args:
        retriever: a `CaseRetriever` (`SearchCaseRetriever` over a collection, `EmbeddingCaseRetriever`).
        knowledge: the knowledge graph, for negation-aware agreement and graph facts (None: words only).
        linker: overrides the concept linker built from `knowledge`.
        coherent: compose only from `coherent_subset` (one body region; the case itself when the query image
            is in the index); False mixes all retrieved cases.
        max_tokens: the generator's answer budget (SmolLM2-135M on 2 busy cores: minutes for 400 tokens).
    """

    def __init__(
        self,
        retriever: CaseRetriever,
        knowledge: Knowledge | None = None,
        linker: ConceptLinker | None = None,
        max_tokens: int = 256,
        coherent: bool = True,
    ) -> None:
        self.retriever = retriever
        self.max_tokens = max_tokens
        self.coherent = coherent
        self.knowledge = knowledge
        self.linker = linker or (linker_of(knowledge) if knowledge is not None else None)

    @classmethod
    def from_workspace(cls, workspace: Workspace, collection: str | None = None) -> ReportDrafter:
        """A drafter over one collection of a workspace (its search service and knowledge graph)."""
        return cls(SearchCaseRetriever(workspace.search_service(collection)), workspace.knowledge())

    def draft(
        self,
        image: Image | Sequence[Image] | None = None,
        indication: str | None = None,
        *,
        k: int = 5,
        generator: Generator | None = None,
    ) -> ReportDraft:
        """Draft a report for a query image (or several views of one study) and/or a clinical indication.

        Args:
            image: a PIL image, a list of images of the same study, or None for a text-only query.
            indication: clinical indication; alone, it is the query (hybrid text search over reports).
            k: cases to retrieve and compose from.
            generator: optional phraser (`engine.rag.create(...)`); its output is validated (module docstring).

        Raises:
            QueryError: neither an image nor an indication was given, or k < 1.
        """
        images = [] if image is None else list(image) if isinstance(image, list | tuple) else [image]
        indication = indication.strip() if indication and indication.strip() else None
        if not images and not indication:
            raise QueryError("a report needs an image or an indication (or both)")
        if k < 1:
            raise QueryError(f"k must be >= 1, got {k}")
        neighbours = self.retriever.retrieve(images, indication, k)
        query = "image+text" if images and indication else "image" if images else "text"
        draft = self.compose(neighbours, indication=indication, query=query)
        if generator is not None and neighbours:
            draft = self.rephrase(draft, neighbours, generator, images)
        return draft

    def compose(
        self, neighbours: Sequence[CaseNeighbour], *, indication: str | None = None, query: str = "image"
    ) -> ReportDraft:
        """The extractive consensus draft from retrieved cases (best first)."""
        if not neighbours:
            return ReportDraft(
                "No similar case was found.", "No impression can be drafted.", (), (), (), indication, query
            )
        kept = coherent_subset(neighbours) if self.coherent else list(range(len(neighbours)))
        subset = [neighbours[i] for i in kept]
        findings = [_renumber(s, kept) for s in compose_findings(subset, self.linker)]
        impression = compose_impression(subset, self.linker)
        impression = _renumber(impression, kept) if impression else None
        sentences = (*findings, *([impression] if impression else []))
        citations = tuple(
            Citation(
                number,
                n.record_id,
                n.case_id,
                n.similarity,
                n.source,
                tuple(s.text for s in sentences if s.citation == number),
            )
            for number, n in enumerate(neighbours, start=1)
        )
        return ReportDraft(
            findings=_tagged(findings) or "No findings were reported in the similar cases.",
            impression=_tagged([impression]) if impression else "No impression can be drafted.",
            sentences=sentences,
            citations=citations,
            facts=self.facts(impression.text if impression else ""),
            indication=indication,
            query=query,
        )

    def facts(self, text: str) -> tuple[str, ...]:
        """Graph facts about the concepts asserted in `text`: "<concept> is a <parent>" (at most MAX_FACTS)."""
        if self.knowledge is None or not text:
            return ()
        out: list[str] = []
        graph = self.knowledge.graph
        for mention in self.knowledge.linker.link(text):
            if mention.polarity == "negated":
                continue
            for parent in graph.parents(mention.concept_id)[:2]:
                fact = f"{mention.name} ({mention.concept_id}) is a {parent.name} ({parent.id})"
                if fact not in out:
                    out.append(fact)
        return tuple(out[:MAX_FACTS])

    def rephrase(
        self,
        draft: ReportDraft,
        neighbours: Sequence[CaseNeighbour],
        generator: Generator,
        images: Sequence[Image] = (),
    ) -> ReportDraft:
        """Ask `generator` to rephrase `draft`; keep its answer only if its citations pass `check_citations`."""
        contexts = [
            Context(n.record_id, f"Findings: {n.findings} Impression: {n.impression}", n.similarity)
            for n in neighbours
        ]
        messages = build_messages(draft.indication or "", contexts, draft.facts, task="report")
        messages[-1]["content"] += (
            "\n\nRephrase this draft as FINDINGS: ... IMPRESSION: ..., keeping every [n] citation:\n"
            + draft.text
        )
        name = getattr(generator, "name", type(generator).__name__)
        try:
            answer = generator.generate(messages, images=list(images) or None, max_tokens=self.max_tokens)
        except Exception as e:  # a failing phraser must not lose the draft
            logger.warning("generator %s failed (%s): keeping the extractive draft", name, e)
            return _fallback(draft, name, f"generator error: {e}")
        required = {s.citation for s in draft.sentences}
        kept = coherent_subset(neighbours) if self.coherent else range(len(neighbours))
        reason = check_citations(answer, len(neighbours), required, allowed={i + 1 for i in kept})
        if reason:
            logger.info("generator %s output rejected (%s): keeping the extractive draft", name, reason)
            return _fallback(draft, name, reason, answer)
        findings, impression = _sections(answer)
        phrasing = {"method": "generator", "generator": name, "fallback_reason": None, "raw": answer}
        return replace(draft, findings=findings, impression=impression, phrasing=phrasing)


def check_citations(
    answer: str, count: int, required: set[int], allowed: set[int] | None = None
) -> str | None:
    """Why a generated report is not acceptable, or None: it must have FINDINGS and IMPRESSION text, cite only
    [1]..[count] and, when `allowed` is given, only those (the cases the draft may mix: one body region, or the
    near-duplicate case alone), keep every citation in `required`, and cite in every sentence."""
    if not _IMPRESSION.search(answer):
        return "no IMPRESSION section"
    findings, impression = _sections(answer)
    if not findings or not impression:
        return f"empty {'FINDINGS' if not findings else 'IMPRESSION'} section"
    cited = [int(n) for n in _CITATION.findall(answer)]
    if not cited:
        return "no citations"
    unknown = sorted({n for n in cited if not 1 <= n <= count})
    if unknown:
        return f"cites {unknown}, not retrieved cases (1..{count})"
    excluded = sorted({n for n in cited if allowed is not None and n not in allowed})
    if excluded:
        return f"cites {excluded}, cases the draft left out (another body region, or not the matching case)"
    dropped = sorted(required - set(cited))
    if dropped:
        return f"dropped citations {dropped}"
    body = _FINDINGS.sub("", _IMPRESSION.sub("\n", answer))
    body = _TRAILING_CITATIONS.sub(r" \2\1", body)  # "text. [1] Next" -> "text [1]. Next"
    uncited = [s for s in split_sentences(body) if len(s.split()) > 1 and not _CITATION.search(s)]
    if uncited:
        return f"sentence without citation: {uncited[0][:80]!r}"
    return None


def _sections(answer: str) -> tuple[str, str]:
    before, after = _IMPRESSION.split(answer, maxsplit=1)
    return " ".join(_FINDINGS.sub("", before).split()), " ".join(after.split())


def _fallback(draft: ReportDraft, name: str, reason: str, raw: str | None = None) -> ReportDraft:
    phrasing = {"method": "extractive", "generator": name, "fallback_reason": reason, "raw": raw}
    return replace(draft, phrasing=phrasing)


def draft_report(
    workspace: Workspace,
    image: Image | Sequence[Image] | None = None,
    indication: str | None = None,
    *,
    collection: str | None = None,
    k: int = 5,
    generator: Generator | None = None,
) -> ReportDraft:
    """One-call drafting for the CLI, API and web app: `ReportDrafter.from_workspace(...).draft(...)`."""
    drafter = ReportDrafter.from_workspace(workspace, collection)
    return drafter.draft(image, indication, k=k, generator=generator)
