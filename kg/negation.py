"""NegEx/ConText-style negation and uncertainty scopes over tokens, and sentence splitting.

A trigger phrase opens a scope: *pre* triggers ("no", "without", "negative for", "no evidence of",
"free of", "possible", "may represent") act on the mentions after them, *post* triggers ("is not
seen", "are absent", "has resolved", "cannot be excluded") on the mentions before them. A mention
takes the nearest trigger in each direction within its sentence, provided no terminator ("but",
"however", "although", "there is", a semicolon) lies between them and at most ``window`` other
tokens separate them; tokens of other mentions and ``XXXX`` placeholders are not counted, so a
coordinated list ("no pneumothorax, pleural effusion or focal consolidation") stays in one scope.
*Pseudo* triggers ("no change", "no increase", "not only") are matched like triggers (the longest
phrase wins) but open no scope, and block a shorter trigger inside them.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from kg.normalize import PLACEHOLDER, Token, normalize_name, phrases

PRE_NEGATION = "pre_negation"
POST_NEGATION = "post_negation"
PRE_UNCERTAINTY = "pre_uncertainty"
POST_UNCERTAINTY = "post_uncertainty"
BOTH_UNCERTAINTY = "both_uncertainty"  # "versus": hedges the mentions on both sides
PSEUDO = "pseudo"
TERMINATION = "termination"

DEFAULT_TRIGGERS: dict[str, tuple[str, ...]] = {
    PRE_NEGATION: phrases(
        """
        no | not | without | negative for | no evidence of | no evidence for | no sign of
        no signs of | no finding of | no findings of | no suggestion of
        no radiographic evidence of | without evidence of | free of | clear of | absence of
        resolution of | interval resolution of | removal of | no longer | rules out | neither | nor
        denies | denied | never
        """
    ),
    POST_NEGATION: phrases(
        """
        not seen | not identified | not visualized | not present | not demonstrated | not evident
        not appreciated | not detected | absent | resolved | has resolved | have resolved
        has cleared | have cleared | ruled out | removed | no longer seen | no longer visualized
        no longer present | no longer identified | is gone | are gone
        """
    ),
    PRE_UNCERTAINTY: phrases(
        """
        possible | possibly | probable | probably | may | might | could | may represent | may be
        could represent | might represent | suspect | suspected | suspicious for | suspicion of
        suggestive of | suggesting | suggests | concerning for | worrisome for | question of
        questionable | equivocal | indeterminate | cannot exclude | can not exclude | can t exclude
        cannot rule out | can not rule out | rule out | r o | evaluate for | evaluation for
        assess for | differential diagnosis | presumably | presumed
        """
    ),
    POST_UNCERTAINTY: phrases(
        """
        cannot be excluded | can not be excluded | cannot be entirely excluded | not excluded
        cannot be ruled out | can not be ruled out | not ruled out | is possible | is suspected
        is questioned | not be excluded | difficult to exclude
        """
    ),
    BOTH_UNCERTAINTY: phrases(
        """
        versus | vs
        """
    ),
    PSEUDO: phrases(
        """
        no change | no significant change | no interval change | no significant interval change
        no increase | no significant increase | no definite change | no further | not only
        not necessarily | without change | without interval change | without significant change
        gram negative | not certain whether | no change in | not drained | age indeterminate
        """
    ),
    TERMINATION: phrases(
        """
        but | however | although | though | except | aside from | apart from | nevertheless | yet
        which | there is | there are | there has been | there have been | there was | otherwise
        with the exception of | other than | cause of | source of | etiology of | reason for
        """
    ),
}

_PRE = {PRE_NEGATION, PRE_UNCERTAINTY, BOTH_UNCERTAINTY, PSEUDO}
_POST = {POST_NEGATION, POST_UNCERTAINTY, BOTH_UNCERTAINTY, PSEUDO}
_SENTENCE_END_RE = re.compile(r"[.!?]+(?=\s|$|[A-Z])|\n\s*\n")
_ABBREVIATIONS = {"vs", "dr", "mr", "mrs", "ms", "st", "approx", "eg", "ie", "e.g", "i.e", "cf"}


def sentence_spans(text: str) -> list[tuple[int, int]]:
    """``[start, end)`` spans of the sentences of a text (ends at ``.``, ``!``, ``?`` or a blank line).

    A period between digits ("1.5 cm") or after a short abbreviation ("vs.") does not end a sentence.
    """
    spans: list[tuple[int, int]] = []
    start = 0
    for match in _SENTENCE_END_RE.finditer(text):
        before = text[start : match.start()].split()
        if match.group().startswith(".") and before and before[-1].lower().rstrip(".") in _ABBREVIATIONS:
            continue
        spans.append((start, match.end()))
        start = match.end()
    spans.append((start, len(text)))
    trimmed = []
    for begin, end in spans:
        segment = text[begin:end]
        stripped = segment.strip()
        if stripped:
            offset = begin + len(segment) - len(segment.lstrip())
            trimmed.append((offset, offset + len(stripped)))
    return trimmed


@dataclass(frozen=True)
class Trigger:
    """A trigger phrase found in a text: tokens ``[start, end)`` and its kind."""

    start: int
    end: int
    kind: str


@dataclass(frozen=True)
class _Scope:
    """Per-text data the scope scans read."""

    sentence_of: Sequence[int]
    stops: Sequence[bool]
    skip: Sequence[bool]
    by_end: dict[int, Trigger]
    by_start: dict[int, Trigger]


class NegationDetector:
    """Finds triggers and decides, per mention, whether it is negated and/or uncertain."""

    def __init__(
        self, triggers: dict[str, Sequence[str]] | None = None, pre_window: int = 8, post_window: int = 6
    ) -> None:
        """Compile trigger phrases (normalised like concept names) into a token trie.

        Args:
            triggers: Phrases per kind; defaults to ``DEFAULT_TRIGGERS``.
            pre_window: Most counted tokens between a pre trigger and the mention it scopes.
            post_window: Most counted tokens between a mention and a post trigger after it.
        """
        self.pre_window = pre_window
        self.post_window = post_window
        self._trie: dict = {}
        for kind, kind_phrases in (triggers or DEFAULT_TRIGGERS).items():
            for phrase in kind_phrases:
                node = self._trie
                for word in normalize_name(phrase).split():
                    node = node.setdefault(word, {})
                node[""] = kind

    def find_triggers(self, tokens: Sequence[Token], barriers: Sequence[bool]) -> list[Trigger]:
        """Longest-match trigger phrases, not crossing a barrier (punctuation, sentence end)."""
        found: list[Trigger] = []
        index = 0
        while index < len(tokens):
            node, best = self._trie, None
            position = index
            while position < len(tokens) and tokens[position].norm in node:
                node = node[tokens[position].norm]
                if "" in node:
                    best = Trigger(index, position + 1, node[""])
                if barriers[position]:
                    break
                position += 1
            if best is not None:
                found.append(best)
                index = best.end
            else:
                index += 1
        return found

    def classify(
        self,
        tokens: Sequence[Token],
        mentions: Sequence[tuple[int, int]],
        sentence_of: Sequence[int],
        stops: Sequence[bool],
        triggers: Sequence[Trigger],
    ) -> list[tuple[bool, bool]]:
        """(negated, uncertain) for each mention given as a token span ``[start, end)``.

        Args:
            tokens: Tokens of the text.
            mentions: Token spans of the mentions.
            sentence_of: Sentence number of each token.
            stops: ``stops[i]`` is True when a scope may not pass from token i to i+1 (a semicolon).
            triggers: Output of ``find_triggers``.
        """
        skip = [token.norm == PLACEHOLDER for token in tokens]
        inside = [False] * len(tokens)
        for start, end in mentions:
            for i in range(start, end):
                skip[i] = inside[i] = True
        # A trigger word that is part of a concept name ("spondylosis without myelopathy") is no trigger.
        kept = [t for t in triggers if not any(inside[t.start : t.end])]
        scope = _Scope(
            sentence_of=sentence_of,
            stops=stops,
            skip=skip,
            by_end={trigger.end - 1: trigger for trigger in kept},
            by_start={trigger.start: trigger for trigger in kept},
        )
        results = []
        for start, end in mentions:
            kinds = {self._scan_back(scope, start - 1), self._scan_forward(scope, end)}
            negated = bool(kinds & {PRE_NEGATION, POST_NEGATION})
            uncertain = bool(kinds & {PRE_UNCERTAINTY, POST_UNCERTAINTY, BOTH_UNCERTAINTY})
            results.append((negated, uncertain))
        return results

    def _scan_back(self, scope: _Scope, index: int) -> str | None:
        """Kind of the nearest pre trigger before token ``index + 1`` in its scope, if any."""
        sentence, counted = scope.sentence_of[index + 1], 0
        while index >= 0 and scope.sentence_of[index] == sentence and not scope.stops[index]:
            trigger = scope.by_end.get(index)
            if trigger is not None:
                if trigger.kind in _PRE or trigger.kind == TERMINATION:
                    return trigger.kind if trigger.kind != TERMINATION else None
                counted += trigger.end - trigger.start  # a post trigger of an earlier mention
                index = trigger.start - 1
                continue
            counted += 0 if scope.skip[index] else 1
            if counted > self.pre_window:
                return None
            index -= 1
        return None

    def _scan_forward(self, scope: _Scope, index: int) -> str | None:
        """Kind of the nearest post trigger from token ``index`` on in its scope, if any."""
        sentence, counted = scope.sentence_of[index - 1], 0
        while index < len(scope.skip) and scope.sentence_of[index] == sentence and not scope.stops[index - 1]:
            trigger = scope.by_start.get(index)
            if trigger is not None:
                if trigger.kind in _POST or trigger.kind == TERMINATION:
                    return trigger.kind if trigger.kind != TERMINATION else None
                return None  # a pre trigger opens the next scope
            counted += 0 if scope.skip[index] else 1
            if counted > self.post_window:
                return None
            index += 1
        return None
