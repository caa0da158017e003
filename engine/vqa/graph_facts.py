"""Knowledge-graph evidence for knowledge questions ("How to treat the disease in this image?").

SLAKE's knowledge questions (`kvqa`) ask for an attribute of what the image shows: the treatment, symptom,
cause or prevention of its disease, the function of its main organ, the organ that belongs to a body system.
The answer is a graph fact once the entity is known, and the entity is found the way a radiologist would look
it up: in the most similar training images (their organ / lesion annotations and the diseases and organs their
questions were answered with), weighted by image similarity, and narrowed by any organ the question names
("the disease located on the left of lung").

`GraphFacts.votes` turns that into a vote over answers, with the facts that produced it as citations:
``("pneumonia", "treatment", "medical therapy, supportive therapy")`` from training image ``slake:xmlab12``.
"""

from __future__ import annotations

import logging
import re
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from engine.vqa.data import VqaItem, normalise_answer
from kg.errors import ConceptNotFoundError
from kg.graph import ConceptGraph
from kg.slake_kg import slake_id

logger = logging.getLogger(__name__)

DISEASE_TYPES = frozenset({"disease", "finding"})
ORGAN_TYPES = frozenset({"anatomy"})

# Question wording -> graph relations to read (first present wins) and the kind of entity they start from.
# "damage" questions ("How much damage will be caused to the body taking such an image?") are about the
# imaging modality, not the graph: they are matched first and answered by the head and retrieval only.
_NO_GRAPH = re.compile(r"\bdamage\b")
_RELATIONS: tuple[tuple[re.Pattern[str], tuple[str, ...], frozenset[str]], ...] = (
    (re.compile(r"\b(treat|treated|treatment|cure)\b"), ("treatment",), DISEASE_TYPES),
    (re.compile(r"\bsymptoms?\b"), ("symptom",), DISEASE_TYPES),
    (re.compile(r"\bprevent(ed|ion)?\b"), ("prevention",), DISEASE_TYPES),
    (re.compile(r"\b(cause|caused|causes)\b"), ("cause",), DISEASE_TYPES),
    (re.compile(r"\b(belong|belongs|part of)\b.*\bsystem\b"), ("belong_to",), ORGAN_TYPES),
    (re.compile(r"\b(effect)\b"), ("effect", "function"), ORGAN_TYPES),
    (re.compile(r"\b(function|role|used for|can .+ do|could .+ do)\b"), ("function", "effect"), ORGAN_TYPES),
)
_STOP_WORDS = frozenset(
    "the a an of in on to this that what which how is are be can could will organ organs picture image".split()
)
_SIDES = re.compile(r"\b(left|right|upper|lower|main|center|central)\b")


@dataclass(frozen=True)
class Fact:
    """One graph fact used as evidence: head entity, relation, value, the training image that suggested the
    head, and the weight the fact got in the vote."""

    head: str
    relation: str
    value: str
    record_id: str
    weight: float

    def as_dict(self) -> dict[str, object]:
        return {
            "head": self.head,
            "relation": self.relation,
            "value": self.value,
            "record_id": self.record_id,
            "weight": round(self.weight, 4),
        }


def question_relation(question: str) -> tuple[tuple[str, ...], frozenset[str]] | None:
    """The graph relations a knowledge question asks for and the entity kinds they start from, or None."""
    text = question.lower()
    if _NO_GRAPH.search(text):
        return None
    for pattern, relations, kinds in _RELATIONS:
        if pattern.search(text):
            return relations, kinds
    return None


class GraphFacts:
    """Answers knowledge questions from graph facts about the entities of similar training images.

    Args:
        graph: the engine's concept graph (SLAKE attributes are relations to value nodes).
        entities: training record id -> entity names seen on that image (organ / lesion boxes, and the answers
            of its questions that name a graph disease or organ).
    """

    def __init__(self, graph: ConceptGraph, entities: Mapping[str, Sequence[str]]) -> None:
        self.graph = graph
        self.entities = {record: tuple(names) for record, names in entities.items()}
        self._resolve = lru_cache(maxsize=None)(self._resolve_uncached)

    @classmethod
    def from_items(cls, graph: ConceptGraph, items: Sequence[VqaItem]) -> GraphFacts:
        """Entities of each training image: its annotated boxes plus answers that resolve to graph entities."""
        entities: dict[str, list[str]] = defaultdict(list)
        facts = cls(graph, {})
        for item in items:
            names = entities[item.record_id]
            for name in (*item.entities, item.raw_answer or item.answer):
                if name and name not in names and facts._resolve(name) is not None:
                    names.append(name)
        facts.entities = {record: tuple(names) for record, names in entities.items() if names}
        logger.info("graph facts: entities for %d training images", len(facts.entities))
        return facts

    def _resolve_uncached(self, name: str) -> tuple[str, str, str] | None:
        """(concept id, display name, semantic type) of an organ or disease the graph holds attributes for."""
        text = _SIDES.sub(" ", name.replace("_", " ").lower())
        text = " ".join(text.split())
        if not text or len(text) > 60:
            return None
        concepts = []
        for key in (text, slake_id(text)):  # the same organ may be a RadLex and a SLAKE node
            try:
                concepts.append(self.graph.concept(key))
            except ConceptNotFoundError:
                continue
        concepts += self.graph.find(text, limit=5)
        for concept in concepts:
            if concept.semantic_type not in DISEASE_TYPES | ORGAN_TYPES:
                continue
            if normalise_answer(concept.name) != normalise_answer(text) and normalise_answer(text) not in {
                normalise_answer(s) for s in concept.synonyms
            }:
                continue
            if any(relation not in ("location_of", "is_a") for relation, _ in self.graph.related(concept.id)):
                return concept.id, concept.name, concept.semantic_type
        return None

    def _values(self, concept_id: str, relations: Sequence[str]) -> list[tuple[str, str]]:
        related = self.graph.related(concept_id, inverse=False)
        for relation in relations:
            values = [(relation, concept.name) for name, concept in related if name == relation]
            if values:
                return values
        return []

    def possible_answers(self) -> set[str]:
        """Every normalised answer the graph can give from the known entities (relation values, and the organs
        themselves for "belongs to" questions): added to the answer vocabulary, so graph answers never seen as
        training answers can still be chosen."""
        relations = {r for _, names, _ in _RELATIONS for r in names}
        answers: set[str] = set()
        for names in self.entities.values():
            for name in names:
                resolved = self._resolve(name)
                if resolved is None:
                    continue
                answers.add(normalise_answer(resolved[1]))
                for relation, concept in self.graph.related(resolved[0], inverse=False):
                    if relation in relations:
                        answers.add(normalise_answer(concept.name))
        answers.discard("")
        return answers

    def _locations(self, concept_id: str) -> set[str]:
        return {c.id for name, c in self.graph.related(concept_id, inverse=False) if name == "location"}

    def _mentioned_organs(self, question: str) -> set[str]:
        """Organs the question names (e.g. "lung" in "the disease located on the left of lung")."""
        words = re.findall(r"[a-z]+", question.lower())
        found = set()
        for n in (3, 2, 1):
            for start in range(len(words) - n + 1):
                if n == 1 and words[start] in _STOP_WORDS:
                    continue
                resolved = self._resolve(" ".join(words[start : start + n]))
                if resolved is not None and resolved[2] in ORGAN_TYPES:
                    found.add(resolved[0])
        return found

    def evidence(
        self, question: str, neighbour_records: Sequence[str], neighbour_weights: Sequence[float]
    ) -> tuple[dict[str, float], list[Fact]]:
        """Answer votes (normalised answer -> weight, summing to 1, empty when no fact applies) and the facts.

        Args:
            question: the question text.
            neighbour_records: training record ids of the most similar (image, question) pairs, best first.
            neighbour_weights: their non-negative weights (e.g. softmax of similarity).
        """
        asked = question_relation(question)
        if asked is None:
            return {}, []
        relations, kinds = asked
        organs = self._mentioned_organs(question) if kinds is DISEASE_TYPES else set()
        target = None
        if relations == ("belong_to",):  # "which organ in the picture belongs to the circulatory system?"
            systems = [
                r
                for r in self._mentioned_organs(question)
                if self.graph.concept(r).name.lower().endswith("system")
            ]
            target = systems[0] if systems else None
        candidates: list[tuple[str, float, list[tuple[str, str, str]]]] = []
        seen_records: set[str] = set()
        for record, weight in zip(neighbour_records, neighbour_weights, strict=True):
            if record in seen_records or weight <= 0:
                continue
            seen_records.add(record)
            heads = [self._resolve(name) for name in self.entities.get(record, ())]
            candidates.append(
                (record, float(weight), [h for h in dict.fromkeys(heads) if h is not None and h[2] in kinds])
            )
        if organs:  # keep diseases located in an organ the question names, when any neighbour has one
            narrowed = [
                (record, weight, [h for h in heads if organs & self._locations(h[0])])
                for record, weight, heads in candidates
            ]
            if any(heads for _, _, heads in narrowed):
                candidates = narrowed
        votes: dict[str, float] = defaultdict(float)
        facts: dict[tuple[str, str, str], Fact] = {}
        for record, weight, heads in candidates:
            contributions: list[tuple[str, str, str]] = []
            for concept_id, head_name, _ in heads:
                if target is not None:  # the answer is the organ itself, when it belongs to the asked system
                    if any(
                        name == "belong_to" and c.id == target
                        for name, c in self.graph.related(concept_id, inverse=False)
                    ):
                        contributions.append((head_name, "belong_to", self.graph.concept(target).name))
                    continue
                contributions.extend((head_name, r, v) for r, v in self._values(concept_id, relations))
            for head_name, relation, value in contributions:
                answer = head_name if target is not None else value
                share = float(weight) / len(contributions)
                votes[normalise_answer(answer)] += share
                key = (head_name, relation, value)
                if key in facts:
                    old = facts[key]
                    facts[key] = Fact(old.head, old.relation, old.value, old.record_id, old.weight + share)
                else:
                    facts[key] = Fact(head_name, relation, value, record, share)
        total = sum(votes.values())
        if total <= 0:
            return {}, []
        ranked = sorted(facts.values(), key=lambda f: -f.weight)
        return {answer: v / total for answer, v in votes.items()}, ranked

    def vote_matrix(
        self,
        items: Sequence[VqaItem],
        vocabulary: Sequence[str],
        neighbour_records: Sequence[Sequence[str]],
        neighbour_weights: np.ndarray,
    ) -> tuple[np.ndarray, list[list[Fact]]]:
        """Graph votes over `vocabulary` for each item, float64 (n, V) (zero rows: no fact applies), and facts."""
        index = {answer: i for i, answer in enumerate(vocabulary)}
        matrix = np.zeros((len(items), len(vocabulary)))
        all_facts: list[list[Fact]] = []
        for row, item in enumerate(items):
            votes, facts = self.evidence(item.question, neighbour_records[row], list(neighbour_weights[row]))
            for answer, weight in votes.items():
                if answer in index:
                    matrix[row, index[answer]] += weight
            all_facts.append(facts)
        return matrix, all_facts
