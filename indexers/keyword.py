"""`BM25Index`: BM25 keyword search over report text (bm25s), persisted in a folder.

Tokenisation (`tokenize`): lower-case; tokens are runs of letters and digits, joined by hyphens
("x-ray", "t2-weighted"); a hyphenated token yields its joined form ("xray", so "x-ray" and "xray"
meet) and its parts ("ray"; "t2", "weighted"); tokens shorter than 2 characters and the Lucene English
stop words of bm25s (which include "no" and "not", as standard BM25 practice) are dropped; alphabetic
tokens are stemmed with PyStemmer's English stemmer when it is installed (`pip install PyStemmer`).
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Callable, Sequence
from pathlib import Path

import bm25s
import numpy as np
from bm25s.stopwords import STOPWORDS_EN

from indexers.errors import BackendUnavailableError, InvalidInputError, OptionsError, StorageError
from indexers.storage import (
    FORMAT_VERSION,
    MANIFEST,
    folder_lock,
    new_generation,
    read_manifest,
    remove_stale,
    write_json_atomic,
)
from indexers.validation import check_ids, check_k, empty_results, pack_results

logger = logging.getLogger(__name__)

STOPWORDS = frozenset(STOPWORDS_EN)
_TOKEN = re.compile(r"[^\W_]+(?:-[^\W_]+)*")
TOKENIZER_VERSION = 1

Stemmer = Callable[[list[str]], list[str]]


def load_stemmer() -> Stemmer | None:
    """PyStemmer's English `stemWords`, or None when PyStemmer is not installed."""
    try:
        import Stemmer as pystemmer
    except ImportError:
        return None
    return pystemmer.Stemmer("english").stemWords


def tokenize(text: str, stemmer: Stemmer | None = None) -> list[str]:
    """Split one text into BM25 tokens (see the module docstring for the rules)."""
    tokens: list[str] = []
    for match in _TOKEN.findall(text.lower()):
        if "-" in match:
            tokens.append(match.replace("-", ""))
            tokens.extend(match.split("-"))
        else:
            tokens.append(match)
    kept = [t for t in tokens if len(t) >= 2 and t not in STOPWORDS]
    if stemmer is None:
        return kept
    alphabetic = [i for i, t in enumerate(kept) if t.isalpha()]
    for i, stem in zip(alphabetic, stemmer([kept[i] for i in alphabetic]), strict=True):
        kept[i] = stem
    return kept


def top_positive(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The (at most) k highest scores above 0, best first; equal scores in document order.

    Selecting among the documents that scored only (a query term is rare in most corpora) keeps the cost off the
    zeros: numpy's partition slows down a hundredfold on an array of mostly equal values.

    Args:
        scores: float (n_documents,) BM25 scores.
        k: how many to keep.

    Returns:
        documents: int64 (m,) positions in `scores`, m <= k; scores: float (m,) their scores, descending.
    """
    documents = np.flatnonzero(scores > 0)
    found = scores[documents]
    if len(documents) > k:
        cut = np.partition(found, len(found) - k)[len(found) - k]  # the k-th best score
        above = np.flatnonzero(found > cut)
        tied = np.flatnonzero(found == cut)[: k - len(above)]
        kept = np.sort(np.concatenate([above, tied]))
        documents, found = documents[kept], found[kept]
    order = np.argsort(-found, kind="stable")
    return documents[order], found[order]


class BM25Index:
    """BM25 over a corpus of (id, text), rebuilt whole by `index()`.

    Args:
        path: folder to persist in (loaded on construction when it holds an index); None = in memory.
        stem: stem tokens with PyStemmer; None = when installed. A loaded index keeps the setting it was
            built with.
    """

    def __init__(self, path: str | os.PathLike[str] | None = None, stem: bool | None = None) -> None:
        self.path = Path(path) if path is not None else None
        self._ids: list[str] = []
        self._retriever: bm25s.BM25 | None = None
        self._stemmer = self._choose_stemmer(stem)
        if self.path is not None:
            with folder_lock(self.path, exclusive=False):  # a concurrent save must not prune what we read
                manifest = read_manifest(self.path, "bm25")
                if manifest:
                    self._load(manifest)

    @staticmethod
    def _choose_stemmer(stem: bool | None) -> Stemmer | None:
        if stem is False:
            return None
        stemmer = load_stemmer()
        if stemmer is None and stem:
            raise BackendUnavailableError("BM25Index(stem=True) needs PyStemmer: pip install PyStemmer")
        return stemmer

    @property
    def stemmed(self) -> bool:
        """Whether tokens are stemmed."""
        return self._stemmer is not None

    def _tokens(self, texts: Sequence[str]) -> list[list[str]]:
        return [tokenize(text, self._stemmer) for text in texts]

    def index(self, ids: Sequence[str], texts: Sequence[str | None]) -> None:
        """Replace the corpus with these documents (a repeated id keeps its last text; None = empty text)."""
        checked = check_ids(ids)
        if len(texts) != len(checked):
            raise InvalidInputError(f"{len(checked)} ids but {len(texts)} texts for the BM25 index")
        for position, text in enumerate(texts):
            if text is not None and not isinstance(text, str):
                raise InvalidInputError(f"texts[{position}] must be a str or None, got {type(text).__name__}")
        last = {id_: text or "" for id_, text in zip(checked, texts, strict=True)}
        self._ids = list(last)
        self._retriever = None
        tokens = self._tokens(list(last.values()))
        if any(tokens):  # bm25s cannot index a corpus without a single token (e.g. only image records)
            retriever = bm25s.BM25()
            retriever.index(tokens, show_progress=False)
            self._retriever = retriever
        logger.debug("BM25 index built over %d documents (stemmed=%s)", len(self._ids), self.stemmed)

    def search(
        self, queries: Sequence[str], k: int, allowed: set[str] | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """The k best documents per query among `allowed` (None = all) that share a term with it.

        Returns:
            ids: object ndarray (n_queries, k) of str, padded with "".
            scores: float32 (n_queries, k) BM25 scores, descending, padded with -inf.
        """
        k = check_k(k)
        if isinstance(queries, str):
            raise InvalidInputError("queries must be a list of str, not one str: wrap it as [query]")
        queries = list(queries)
        if self._retriever is None or not queries:
            return empty_results(len(queries), k)
        mask = None
        if allowed is not None:
            mask = np.fromiter((id_ in allowed for id_ in self._ids), dtype=np.float32, count=len(self._ids))
            if not mask.any():
                return empty_results(len(queries), k)
        rows = []
        for tokens in self._tokens(queries):
            token_ids = self._retriever.get_tokens_ids(tokens)
            if not token_ids:  # no query token is in the corpus: nothing shares a term with it
                rows.append([])
                continue
            scores = self._retriever.get_scores_from_ids(token_ids, weight_mask=mask)
            documents, best = top_positive(scores, k)
            rows.append([(self._ids[d], s) for d, s in zip(documents.tolist(), best.tolist(), strict=True)])
        return pack_results(rows, k)

    def count(self) -> int:
        """Number of documents."""
        return len(self._ids)

    def ids(self) -> set[str]:
        """Every document id."""
        return set(self._ids)

    def save(self) -> None:
        """Write the index to `path` atomically (a new generation folder, then the manifest)."""
        if self.path is None:
            raise OptionsError("this BM25 index lives in memory: create it with path=FOLDER to save it")
        self.path.mkdir(parents=True, exist_ok=True)
        folder = ""
        with folder_lock(self.path, exclusive=True):  # another process's save or load of this folder waits
            if self._retriever is not None:
                folder = f"bm25-{new_generation()}"
                self._retriever.save(str(self.path / folder))
            manifest = {
                "format": FORMAT_VERSION,
                "backend": "bm25",
                "tokenizer": TOKENIZER_VERSION,
                "stemmed": self.stemmed,
                "folder": folder,
                "ids": self._ids,
            }
            write_json_atomic(self.path / MANIFEST, manifest)
            remove_stale(self.path, "bm25-", keep=folder)
        logger.info("saved BM25 index (%d documents) to %s", len(self._ids), self.path)

    def _load(self, manifest: dict) -> None:
        if manifest.get("stemmed") and load_stemmer() is None:
            raise BackendUnavailableError(f"the BM25 index at {self.path} was stemmed: pip install PyStemmer")
        if manifest.get("tokenizer") != TOKENIZER_VERSION:
            raise StorageError(f"BM25 index at {self.path} used another tokenizer: rebuild it with index()")
        self._stemmer = load_stemmer() if manifest.get("stemmed") else None
        self._ids = list(manifest.get("ids", []))
        folder = manifest.get("folder")
        if not self._ids or not folder:
            return
        if not folder or not (self.path / folder).is_dir():
            raise StorageError(f"BM25 data folder {folder!r} named by {self.path / MANIFEST} is missing")
        self._retriever = bm25s.BM25.load(str(self.path / folder))
        if self._retriever.scores.get("num_docs") != len(self._ids):
            raise StorageError(
                f"BM25 index at {self.path}: {len(self._ids)} ids but a different document count"
            )

    def close(self) -> None:
        """Drop the index from memory (nothing to release on disk; unsaved changes are lost)."""
        self._retriever = None
        self._ids = []
