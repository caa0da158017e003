"""Report-generation metrics in pure Python: ROUGE-L, corpus BLEU-4 and concept F1.

Tokens are lower-cased runs of letters and digits (punctuation and citation marks dropped), for every metric.

- ROUGE-L F: LCS-based precision and recall per pair, F = 2PR / (P + R) (rouge-score's `fmeasure`, no
  stemming), averaged over pairs.
- BLEU-4: corpus-level (Papineni et al.): clipped 1-4-gram matches and candidate n-gram counts summed over
  the corpus, uniform weights, brevity penalty from the summed lengths; an n-gram order with no match
  counts 0.1 matches (NLTK's smoothing method 1), so a small corpus does not collapse to 0.
- Concept F1: the sets of concept ids the KG linker finds *asserted* (present or uncertain) in the hypothesis
  and the reference; negated mentions are excluded ("no effusion" asserts nothing). Per pair F1, averaged
  over pairs whose reference asserts at least one concept. A polarity-aware variant compares
  (concept id, negated?) pairs instead.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Callable, Sequence

import numpy as np

_TOKEN = re.compile(r"[a-z0-9]+")
_SMOOTH_EPSILON = 0.1

ConceptSets = Callable[[str], tuple[set[str], set[str]]]
"""text -> (asserted concept ids, negated concept ids)."""


def tokenize(text: str) -> list[str]:
    """Lower-cased letter/digit tokens."""
    return _TOKEN.findall((text or "").lower())


def lcs_length(first: Sequence[str], second: Sequence[str]) -> int:
    """Length of the longest common subsequence (O(len(first) * len(second)) dynamic programme)."""
    if not first or not second:
        return 0
    previous = [0] * (len(second) + 1)
    for token in first:
        current = [0]
        for j, other in enumerate(second, start=1):
            current.append(previous[j - 1] + 1 if token == other else max(previous[j], current[j - 1]))
        previous = current
    return previous[-1]


def rouge_l(hypothesis: str, reference: str) -> float:
    """ROUGE-L F-measure (beta 1) of one pair; 0 when either side has no token."""
    hyp, ref = tokenize(hypothesis), tokenize(reference)
    lcs = lcs_length(hyp, ref)
    if not lcs:
        return 0.0
    precision, recall = lcs / len(hyp), lcs / len(ref)
    return 2 * precision * recall / (precision + recall)


def _ngrams(tokens: Sequence[str], n: int) -> Counter:
    return Counter(tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1))


def bleu_statistics(hypothesis: str, reference: str, max_order: int = 4) -> np.ndarray:
    """One pair's BLEU counts: int64 (2 * max_order + 2,) = clipped matches per order, candidate n-grams per
    order, hypothesis length, reference length (sum them over a corpus, then `bleu_from_statistics`)."""
    hyp, ref = tokenize(hypothesis), tokenize(reference)
    matches, totals = [], []
    for n in range(1, max_order + 1):
        hyp_grams, ref_grams = _ngrams(hyp, n), _ngrams(ref, n)
        matches.append(sum(min(count, ref_grams[gram]) for gram, count in hyp_grams.items()))
        totals.append(max(len(hyp) - n + 1, 0))
    return np.array([*matches, *totals, len(hyp), len(ref)], dtype=np.int64)


def bleu_from_statistics(statistics: np.ndarray, max_order: int = 4) -> float:
    """Corpus BLEU from summed `bleu_statistics` (smoothed as the module docstring says)."""
    matches, totals = statistics[:max_order], statistics[max_order : 2 * max_order]
    hyp_length, ref_length = int(statistics[-2]), int(statistics[-1])
    if not hyp_length or not all(totals):
        return 0.0
    log_precision = sum(
        math.log((int(match) or _SMOOTH_EPSILON) / int(total)) for match, total in zip(matches, totals)
    )
    penalty = 1.0 if hyp_length >= ref_length else math.exp(1 - ref_length / hyp_length)
    return penalty * math.exp(log_precision / max_order)


def corpus_bleu(hypotheses: Sequence[str], references: Sequence[str], max_order: int = 4) -> float:
    """Corpus BLEU (one reference per hypothesis), smoothed as the module docstring says; in [0, 1]."""
    if len(hypotheses) != len(references):
        raise ValueError(f"{len(hypotheses)} hypotheses but {len(references)} references")
    total = np.zeros(2 * max_order + 2, dtype=np.int64)
    for hypothesis, reference in zip(hypotheses, references):
        total += bleu_statistics(hypothesis, reference, max_order)
    return bleu_from_statistics(total, max_order)


def set_f1(predicted: set, expected: set) -> float:
    """F1 of two sets (1 when both are empty)."""
    if not predicted and not expected:
        return 1.0
    common = len(predicted & expected)
    if not common:
        return 0.0
    precision, recall = common / len(predicted), common / len(expected)
    return 2 * precision * recall / (precision + recall)


def concept_f1(
    hypotheses: Sequence[str], references: Sequence[str], concept_sets: ConceptSets
) -> dict[str, float]:
    """Mean concept F1 over pairs whose reference asserts a concept (see the module docstring).

    Returns:
        {"concept_f1": asserted concepts only, "concept_f1_polarity": (id, negated) pairs, "n": pairs scored}.
    """
    plain, polar = [], []
    for hypothesis, reference in zip(hypotheses, references):
        ref_pos, ref_neg = concept_sets(reference)
        if not ref_pos:
            continue
        hyp_pos, hyp_neg = concept_sets(hypothesis)
        plain.append(set_f1(hyp_pos, ref_pos))
        polar.append(
            set_f1(
                {(c, False) for c in hyp_pos} | {(c, True) for c in hyp_neg},
                {(c, False) for c in ref_pos} | {(c, True) for c in ref_neg},
            )
        )
    count = len(plain)
    return {
        "concept_f1": sum(plain) / count if count else 0.0,
        "concept_f1_polarity": sum(polar) / count if count else 0.0,
        "n": count,
    }


def linker_concept_sets(link: Callable[[str], Sequence[tuple[str, str]]]) -> ConceptSets:
    """Wrap a text -> [(concept id, polarity)] linker into `ConceptSets` (uncertain counts as asserted)."""

    def sets(text: str) -> tuple[set[str], set[str]]:
        mentions = list(link(text))
        positive = {cid for cid, polarity in mentions if polarity != "negated"}
        return positive, {cid for cid, polarity in mentions if polarity == "negated"} - positive

    return sets


def pair_concept_f1(hypothesis: str, reference: str, concept_sets: ConceptSets) -> float | None:
    """One pair's concept F1 (asserted concepts), None when the reference asserts none."""
    ref_pos, _ = concept_sets(reference)
    return set_f1(concept_sets(hypothesis)[0], ref_pos) if ref_pos else None


def paired_bootstrap(
    first: Sequence[str],
    second: Sequence[str],
    references: Sequence[str],
    concept_sets: ConceptSets | None = None,
    resamples: int = 1000,
    seed: int = 0,
) -> dict[str, dict[str, float]]:
    """Difference first - second of ROUGE-L, BLEU-4 and concept F1 with a paired bootstrap 95% interval
    (cases resampled with replacement, the same resample for both systems).

    Returns:
        metric -> {"delta", "low", "high", "p_not_better"} (share of resamples where first <= second).
    """
    n = len(references)
    rng = np.random.default_rng(seed)
    rows = rng.integers(0, n, size=(resamples, n))
    out: dict[str, dict[str, float]] = {}

    def summarise(name: str, observed: float, deltas: np.ndarray) -> None:
        low, high = np.percentile(deltas, [2.5, 97.5])
        out[name] = {
            "delta": float(observed),
            "low": float(low),
            "high": float(high),
            "p_not_better": float(np.mean(deltas <= 0)),
        }

    rouge = np.array([rouge_l(a, r) - rouge_l(b, r) for a, b, r in zip(first, second, references)])
    summarise("rouge_l", rouge.mean(), rouge[rows].mean(axis=1))
    stats_a = np.stack([bleu_statistics(h, r) for h, r in zip(first, references)])
    stats_b = np.stack([bleu_statistics(h, r) for h, r in zip(second, references)])
    bleu = np.array(
        [bleu_from_statistics(stats_a[i].sum(0)) - bleu_from_statistics(stats_b[i].sum(0)) for i in rows]
    )
    summarise("bleu4", bleu_from_statistics(stats_a.sum(0)) - bleu_from_statistics(stats_b.sum(0)), bleu)
    if concept_sets is not None:
        pairs = [
            (pair_concept_f1(a, r, concept_sets), pair_concept_f1(b, r, concept_sets))
            for a, b, r in zip(first, second, references)
        ]
        kept = np.array([i for i, (a, _) in enumerate(pairs) if a is not None], dtype=np.int64)
        if len(kept):
            delta = np.array([pairs[i][0] - pairs[i][1] for i in kept])
            resampled = rng.integers(0, len(kept), size=(resamples, len(kept)))
            summarise("concept_f1", delta.mean(), delta[resampled].mean(axis=1))
    return out
