"""Text normalisation shared by the graph index, the merge step and the linker.

One function decides when two surface forms are "the same words": case folding, accent folding,
hyphens split into tokens, possessive ``'s`` dropped and a simple plural rule (``effusions`` ->
``effusion``, ``opacities`` -> ``opacity``, ``vertebrae`` -> ``vertebra``). The plural rule is not
linguistics: it only has to map a singular and its plural onto the same key, and it is applied to
dictionary and text alike.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterator
from functools import lru_cache
from typing import NamedTuple

TOKEN_RE = re.compile(r"[^\W_]+(?:['\u2019][sS]\b)?")
PLACEHOLDER = "xxxx"  # IU X-ray de-identification placeholder ("XXXX")

_IRREGULAR_PLURALS = {
    "metastases": "metastasis",
    "diagnoses": "diagnosis",
    "stenoses": "stenosis",
    "bronchi": "bronchus",
    "emboli": "embolus",
    "calculi": "calculus",
    "foci": "focus",
    "nuclei": "nucleus",
    "vertebrae": "vertebra",
    "bullae": "bulla",
    "sequelae": "sequela",
    "lamellae": "lamella",
    "fistulae": "fistula",
    "ribs": "rib",
    "lungs": "lung",
}
_KEEP_ENDINGS = ("ss", "us", "is", "os")
_SINGULAR_AS = frozenset({"pancreas", "atlas", "alias", "bias", "vas", "gas", "canvas", "arkansas", "kansas"})


class Token(NamedTuple):
    """One word of a text: its normalised form and its character span in the original text."""

    norm: str
    start: int
    end: int
    raw: str


def fold(word: str) -> str:
    """Case-fold a word and strip accents (``Sjögren`` -> ``sjogren``)."""
    if word.isascii():
        return word.lower()
    decomposed = unicodedata.normalize("NFKD", word.casefold())
    return "".join(char for char in decomposed if not unicodedata.combining(char))


def singular(word: str) -> str:
    """Map a folded word to its singular key (``opacities`` -> ``opacity``); short words are kept."""
    if word in _IRREGULAR_PLURALS:
        return _IRREGULAR_PLURALS[word]
    if len(word) <= 3 or not word.isalpha():
        return word
    if word.endswith("thoraces"):  # pneumothoraces, hemithoraces
        return word[:-3] + "x"
    if word.endswith("ies") and len(word) > 4:
        return word[:-3] + "y"
    if word.endswith("ae"):
        return word[:-1]
    if word.endswith(("xes", "ches", "shes", "sses")):
        return word[:-2]
    if word.endswith("s") and not word.endswith(_KEEP_ENDINGS) and word not in _SINGULAR_AS:
        return word[:-1]
    return word


@lru_cache(maxsize=200_000)
def normalize_token(word: str) -> str:
    """Normalise one raw token: drop a possessive ``'s``, fold case and accents, singularise."""
    if len(word) > 2 and word[-2] in "'\u2019" and word[-1] in "sS":
        word = word[:-2]
    return singular(fold(word))


def tokenize(text: str) -> Iterator[Token]:
    """Split text into word tokens (letters and digits; hyphens and punctuation separate tokens).

    Args:
        text: Any text.

    Yields:
        Token with the normalised form and the ``[start, end)`` span in ``text``.
    """
    for match in TOKEN_RE.finditer(text):
        raw = match.group()
        yield Token(normalize_token(raw), match.start(), match.end(), raw)


@lru_cache(maxsize=300_000)
def normalize_name(text: str) -> str:
    """The comparison key of a name or synonym: normalised tokens joined by one space.

    ``"Pleural Effusions"``, ``"pleural-effusion"`` and ``"pleural effusion"`` share one key.
    """
    return " ".join(token.norm for token in tokenize(text))


def surface_variants(text: str) -> set[str]:
    """Keys under which a dictionary form should be found: itself, plus hyphen-joined spellings.

    ``"X-ray"`` is found as ``"x ray"`` and ``"xray"``; ``"air-space disease"`` also as
    ``"airspace disease"``.
    """
    variants = {normalize_name(text)}
    if "-" in text:
        variants.add(normalize_name(re.sub(r"(?<=\w)-(?=\w)", "", text)))
    variants.discard("")
    return variants


def invert_comma_name(name: str) -> str:
    """Turn a MeSH-style inverted heading into natural order: ``"Hernia, Hiatal"`` -> ``"Hiatal Hernia"``."""
    head, sep, modifier = name.partition(", ")
    if not sep or "," in modifier:
        return name
    return f"{modifier} {head}"


def phrases(text: str) -> tuple[str, ...]:
    """Split a ``|``-separated list of phrases written over several lines: ``"no | not | free of"``."""
    return tuple(item.strip() for item in text.replace("\n", "|").split("|") if item.strip())
