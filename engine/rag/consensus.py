"""Consensus composition of a report from retrieved cases: pick what the neighbours agree on, cite where from.

Minimum-Bayes-risk selection over sentences: every findings sentence of every retrieved case is a candidate;
its *support* is the similarity-weighted agreement of the *other* cases with it (the best-matching sentence of
each other case: content-word F1, plus agreement of the concepts the KG linker finds, where a negated mention
of a concept the sentence asserts counts against it). Sentences are taken by support, skipping near-duplicates
and sentences that contradict one already taken ("effusion" vs "no effusion"), until the draft reaches the
neighbours' typical length. The impression is the diagnosis (impression) that the neighbours support most.
Each chosen sentence keeps the number ([n]) of the case it was copied from. Pure Python, no model.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

ConceptLinker = Callable[[str], Sequence[tuple[str, str]]]
"""text -> [(concept id, polarity)], polarity "present" | "negated" | "uncertain" (e.g. `linker_of(knowledge)`)."""

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9(\[])|\n+")
_WORD = re.compile(r"[a-z0-9]+")
_STOPWORDS = frozenset(
    "a an and are as at be been by for from has have in is it its of on or the to with was were this that "
    "there these those which also is seen shown noted image images demonstrate demonstrates".split()
)
_DUPLICATE_F1 = 0.6


@dataclass(frozen=True)
class CaseNeighbour:
    """One retrieved case: what was hit (`record_id`), the case it belongs to, and that case's report text.

    similarity: the retrieval score (fused cosine for image queries), higher = closer.
    impression: MedPix "Case Diagnosis" or IU X-ray impression.
    """

    record_id: str
    case_id: str
    similarity: float
    findings: str
    impression: str
    source: str = ""
    region: str | None = None  # normalised body part, when known


@dataclass(frozen=True)
class DraftSentence:
    """One sentence of a draft: its text, section, the neighbour it came from (1-based [n]) and its support."""

    text: str
    section: str  # "findings" | "impression"
    citation: int
    support: float
    position: float = 0.0  # relative position in its source text (orders the findings)
    supporters: tuple[int, ...] = field(default_factory=tuple)  # other neighbours that agree (1-based)


def coherent_subset(neighbours: Sequence[CaseNeighbour], exact: float = 0.99) -> list[int]:
    """Indices of the neighbours a draft may mix, so that it never describes two body regions or two patients:

    - a near-duplicate top hit (similarity >= `exact`: the query image is in the index) -> that case alone;
    - else the cases of the body region with the largest rank weight (cases of unknown region are kept).
    """
    if not neighbours:
        return []
    if neighbours[0].similarity >= exact:
        return [0]
    weights = neighbour_weights(len(neighbours))
    by_region: dict[str, float] = {}
    for neighbour, weight in zip(neighbours, weights):
        if neighbour.region:
            by_region[neighbour.region] = by_region.get(neighbour.region, 0.0) + weight
    if not by_region:
        return list(range(len(neighbours)))
    region = max(by_region, key=lambda name: (by_region[name], -_first_rank(neighbours, name)))
    return [i for i, n in enumerate(neighbours) if n.region in (region, None)]


def _first_rank(neighbours: Sequence[CaseNeighbour], region: str) -> int:
    return next(i for i, n in enumerate(neighbours) if n.region == region)


def split_sentences(text: str) -> list[str]:
    """Sentences of a report text (split at sentence ends and line breaks), stripped, empty ones dropped."""
    return [part.strip() for part in _SENTENCE_END.split(text or "") if part and part.strip()]


def content_words(text: str) -> list[str]:
    """Lower-cased words without stopwords."""
    return [word for word in _WORD.findall(text.lower()) if word not in _STOPWORDS]


def word_f1(first: Sequence[str], second: Sequence[str]) -> float:
    """F1 of the two bags of words (0 when either is empty)."""
    if not first or not second:
        return 0.0
    common = len(set(first) & set(second))
    if not common:
        return 0.0
    precision, recall = common / len(set(first)), common / len(set(second))
    return 2 * precision * recall / (precision + recall)


@dataclass
class _Candidate:
    text: str
    neighbour: int
    position: float
    words: list[str]
    positive: set[str]
    negative: set[str]


def _concepts(text: str, linker: ConceptLinker | None) -> tuple[set[str], set[str]]:
    if linker is None:
        return set(), set()
    mentions = list(linker(text))
    positive = {cid for cid, polarity in mentions if polarity != "negated"}
    negative = {cid for cid, polarity in mentions if polarity == "negated"} - positive
    return positive, negative


def _agreement(candidate: _Candidate, other: Sequence[_Candidate]) -> float:
    """How much one other case's sentences agree with a candidate: best lexical match, concept agreement."""
    lexical = max((word_f1(candidate.words, sentence.words) for sentence in other), default=0.0)
    if not candidate.positive and not candidate.negative:
        return lexical
    positive = set().union(*(s.positive for s in other)) if other else set()
    negative = set().union(*(s.negative for s in other)) if other else set()
    asserted = candidate.positive | candidate.negative
    agree = len(candidate.positive & positive) + len(candidate.negative & negative)
    conflict = len(candidate.positive & (negative - positive)) + len(candidate.negative & positive)
    concept = (agree - conflict) / len(asserted)
    return 0.5 * lexical + 0.5 * concept


def neighbour_weights(count: int) -> list[float]:
    """Rank weights 1/(rank + 1), rank 1-based, normalised to sum 1 (robust to each space's score scale)."""
    raw = [1.0 / (rank + 1) for rank in range(1, count + 1)]
    total = sum(raw) or 1.0
    return [value / total for value in raw]


def _candidates(neighbours: Sequence[CaseNeighbour], linker: ConceptLinker | None) -> list[list[_Candidate]]:
    out = []
    for index, neighbour in enumerate(neighbours):
        sentences = split_sentences(neighbour.findings)
        rows = []
        for position, sentence in enumerate(sentences):
            positive, negative = _concepts(sentence, linker)
            relative = position / max(len(sentences) - 1, 1)
            rows.append(_Candidate(sentence, index, relative, content_words(sentence), positive, negative))
        out.append(rows)
    return out


def _supports(
    candidate: _Candidate, by_case: Sequence[Sequence[_Candidate]], weights: Sequence[float]
) -> tuple[float, tuple[int, ...]]:
    """Weighted mean agreement of the other cases with a candidate, and the other cases that agree (> 0.3)."""
    total, mass, supporters = 0.0, 0.0, []
    for index, sentences in enumerate(by_case):
        if index == candidate.neighbour:
            continue
        agreement = _agreement(candidate, sentences)
        total += weights[index] * agreement
        mass += weights[index]
        if agreement > 0.3:
            supporters.append(index + 1)
    return (total / mass if mass else 0.0), tuple(supporters)


def _contradicts(candidate: _Candidate, chosen: Sequence[_Candidate]) -> bool:
    for other in chosen:
        if candidate.positive & other.negative or candidate.negative & other.positive:
            return True
    return False


def _target_length(neighbours: Sequence[CaseNeighbour], weights: Sequence[float]) -> float:
    """Weighted median word count of the neighbours' findings."""
    lengths = sorted((len(_WORD.findall(n.findings.lower())), w) for n, w in zip(neighbours, weights))
    lengths = [(length, weight) for length, weight in lengths if length]
    if not lengths:
        return 0.0
    half, running = sum(w for _, w in lengths) / 2, 0.0
    for length, weight in lengths:
        running += weight
        if running >= half:
            return float(length)
    return float(lengths[-1][0])


def compose_findings(
    neighbours: Sequence[CaseNeighbour],
    linker: ConceptLinker | None = None,
    *,
    prior: float = 0.1,
    length_scale: float = 1.5,
    min_support: float = 0.0,
) -> list[DraftSentence]:
    """Consensus findings (see the module docstring), in reading order.

    Args:
        neighbours: retrieved cases, best first.
        linker: concept linker for negation-aware agreement (None: words only).
        prior: weight of a sentence's own case rank weight added to its support (prefers closer cases).
        length_scale: multiplies the target length (the neighbours' weighted median findings length); 1.5
            was chosen on the tuning cases (non-held-out MedPix dev cases, leave-one-case-out), never on the
            evaluated ones.
        min_support: sentences at or below this support are skipped once the draft has one sentence.

    Returns:
        The chosen sentences, citation = 1-based index into `neighbours`.
    """
    weights = neighbour_weights(len(neighbours))
    by_case = _candidates(neighbours, linker)
    scored = []
    for sentences in by_case:
        for candidate in sentences:
            support, supporters = _supports(candidate, by_case, weights)
            if len(neighbours) == 1:
                support = 1.0
            scored.append((support + prior * weights[candidate.neighbour], support, supporters, candidate))
    scored.sort(key=lambda item: (-item[0], item[3].neighbour, item[3].position))
    target = _target_length(neighbours, weights) * length_scale
    chosen: list[tuple[float, tuple[int, ...], _Candidate]] = []
    words = 0
    for _, support, supporters, candidate in scored:
        if words and words >= target:
            break
        if chosen and support <= min_support:  # nothing another case agrees with, once one sentence is in
            continue
        taken = [c for _, _, c in chosen]
        if any(word_f1(candidate.words, c.words) >= _DUPLICATE_F1 for c in taken):
            continue
        if _contradicts(candidate, taken):
            continue
        chosen.append((support, supporters, candidate))
        words += len(_WORD.findall(candidate.text.lower()))
    chosen.sort(key=lambda item: (item[2].position, item[2].neighbour))
    return [
        DraftSentence(
            c.text, "findings", c.neighbour + 1, round(support, 4), round(c.position, 4), supporters
        )
        for support, supporters, c in chosen
    ]


def compose_impression(
    neighbours: Sequence[CaseNeighbour], linker: ConceptLinker | None = None
) -> DraftSentence | None:
    """The impression (diagnosis) the neighbours support most: sum over cases of weight x agreement (own
    case counts fully), ties to the closer case. None when no neighbour has an impression."""
    weights = neighbour_weights(len(neighbours))
    rows = []
    for index, neighbour in enumerate(neighbours):
        text = " ".join(neighbour.impression.split())
        if text:
            positive, negative = _concepts(text, linker)
            rows.append(_Candidate(text, index, 0.0, content_words(text), positive, negative))
    if not rows:
        return None
    best: tuple[float, int, tuple[int, ...], _Candidate] | None = None
    for row in rows:
        score, supporters = weights[row.neighbour], []
        for other in rows:
            if other.neighbour != row.neighbour:
                agreement = _agreement(row, [other])
                score += weights[other.neighbour] * agreement
                if agreement > 0.3:
                    supporters.append(other.neighbour + 1)
        if best is None or score > best[0] + 1e-12:
            best = (score, row.neighbour, tuple(supporters), row)
    score, index, supporters, row = best  # type: ignore[misc]
    return DraftSentence(row.text, "impression", index + 1, round(score, 4), 0.0, supporters)
