"""String ids <-> int64 faiss keys, with each id's payload, for `FaissIndex`.

Keys are handed out from a counter and never reused, so a key left behind in an HNSW graph (a tombstone)
can never be mistaken for a live id: a key is live exactly when this table maps it to an id.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from indexers.errors import CorruptIndexError
from indexers.filters import Filter


class KeyTable:
    """The live ids of a faiss index, their int64 keys and their payloads."""

    def __init__(self) -> None:
        self.key_of: dict[str, int] = {}
        self.id_of: dict[int, str] = {}
        self.payloads: dict[str, dict[str, Any]] = {}
        self.next_key = 0

    def __len__(self) -> int:
        return len(self.key_of)

    def assign(self, ids: Sequence[str], payloads: Sequence[dict[str, Any]]) -> np.ndarray:
        """Give each (new or released) id a fresh key; returns int64 (n,) keys."""
        keys = np.arange(self.next_key, self.next_key + len(ids), dtype=np.int64)
        for id_, key, payload in zip(ids, keys.tolist(), payloads, strict=True):
            self.key_of[id_] = key
            self.id_of[key] = id_
            self.payloads[id_] = payload
        self.next_key += len(ids)
        return keys

    def release(self, ids: Iterable[str]) -> np.ndarray:
        """Forget these ids (unknown ones are skipped); returns the int64 keys they held."""
        released = []
        for id_ in ids:
            key = self.key_of.pop(id_, None)
            if key is not None:
                del self.id_of[key]
                self.payloads.pop(id_, None)
                released.append(key)
        return np.asarray(released, dtype=np.int64)

    def names(self, labels: np.ndarray) -> np.ndarray:
        """Map int64 labels (any shape; -1 = no hit) to an object array of ids ("" for no hit)."""
        flat = [self.id_of.get(label, "") for label in labels.ravel().tolist()]
        return np.array(flat, dtype=object).reshape(labels.shape)

    def mask(self, filter: Filter | None) -> np.ndarray:
        """bool (next_key,): True for live keys whose payload satisfies `filter` (all live keys for None)."""
        mask = np.zeros(self.next_key, dtype=bool)
        if filter is None:
            keys = list(self.key_of.values())
        else:
            keys = [key for id_, key in self.key_of.items() if filter.matches(self.payloads[id_])]
        mask[np.asarray(keys, dtype=np.int64)] = True
        return mask

    def to_json(self) -> dict[str, Any]:
        """Parallel lists (ids, keys, payloads) plus the key counter, for the index manifest."""
        ids = list(self.key_of)
        return {
            "next_key": self.next_key,
            "ids": ids,
            "keys": [self.key_of[i] for i in ids],
            "payloads": [self.payloads[i] for i in ids],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any], where: str) -> KeyTable:
        """Inverse of `to_json`; raises CorruptIndexError on inconsistent lists."""
        table = cls()
        try:
            ids, keys, payloads = data["ids"], data["keys"], data["payloads"]
            if not len(ids) == len(keys) == len(payloads):
                raise ValueError("ids, keys and payloads differ in length")
            table.next_key = int(data["next_key"])
        except (KeyError, TypeError, ValueError) as e:
            raise CorruptIndexError(f"corrupt id table in the index manifest at {where}: {e}") from e
        for id_, key, payload in zip(ids, keys, payloads, strict=True):
            table.key_of[id_] = int(key)
            table.id_of[int(key)] = id_
            table.payloads[id_] = payload
        return table
