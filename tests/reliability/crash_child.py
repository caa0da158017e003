"""Child process for the crash and concurrency tests: ingest synthetic reports, SIGKILLing itself at a named
point (or pausing between batches, so that another process can search meanwhile).

    python -m tests.reliability.crash_child HOME BACKEND [--point NAME --nth N] [--count 60 --batch-size 8]
        [--start 0 --prefix synth --delay SECONDS]

The kill points wrap the real code paths (nothing is skipped, the process dies where a power cut or an OOM
kill would hit it); `--point none` runs the ingest to the end. Exit code 0 means the ingest completed.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

POINTS: dict[str, str] = {
    "mid-commit": "inside the SQLite transaction of a batch: rows written, COMMIT not run",
    "between-batches": "after a batch committed, before the next one is read",
    "index-write": "half-way through applying a chunk of changes to the vector index",
    "index-save": "during the vector index save (faiss: data file written, manifest not replaced; "
    "qdrant/milvus: after the flush, before the watermark)",
    "before-watermark": "after every index is saved, before SQLite records how far it got",
    "keyword-save": "during the BM25 save: data folder written, manifest not replaced",
}


def _die() -> None:
    sys.stdout.flush()
    os.kill(os.getpid(), signal.SIGKILL)


class _Trigger:
    """Calls `_die` on the `nth` call (1-based)."""

    def __init__(self, nth: int) -> None:
        self.nth = nth
        self.calls = 0

    def __call__(self) -> None:
        self.calls += 1
        if self.calls == self.nth:
            _die()


def install(point: str, nth: int, backend: str) -> None:
    """Patch the code path of `point` so that the process kills itself there (on the `nth` time)."""
    import indexers
    from engine import collection as collection_module
    from engine import store

    trigger = _Trigger(nth)
    if point == "mid-commit":
        original_transaction = store.RecordStore._transaction
        original_insert = store.RecordStore.insert_records
        inserting = {"now": False}

        @contextmanager
        def transaction(self: Any) -> Iterator[Any]:
            with original_transaction(self) as db:
                yield db
                if inserting["now"]:
                    trigger()  # the batch's rows are in the open transaction; COMMIT comes after this

        def insert_records(self: Any, *args: Any, **kwargs: Any) -> Any:
            inserting["now"] = True
            try:
                return original_insert(self, *args, **kwargs)
            finally:
                inserting["now"] = False

        store.RecordStore._transaction = transaction  # type: ignore[method-assign]
        store.RecordStore.insert_records = insert_records  # type: ignore[method-assign]
    elif point == "between-batches":
        original_add = collection_module.Collection.add

        def add(self: Any, *args: Any, **kwargs: Any) -> Any:
            added = original_add(self, *args, **kwargs)
            trigger()
            return added

        collection_module.Collection.add = add  # type: ignore[method-assign]
    elif point in ("index-write", "index-save"):
        original_create = indexers.create

        def create(name: str, **options: Any) -> Any:
            index = original_create(name, **options)
            if point == "index-write":
                index.add = _half_then_die(index.add, trigger)  # type: ignore[method-assign]
            elif backend == "faiss":
                _kill_before_manifest("indexers.faiss_index", trigger)
            else:
                index.save = _then_die(index.save, trigger)  # type: ignore[method-assign]
            return index

        indexers.create = create  # type: ignore[assignment]
    elif point == "before-watermark":
        original_set = store.RecordStore._set_watermark

        def set_watermark(self: Any, key: str, value: int) -> None:
            if key.startswith("index:"):
                trigger()
            original_set(self, key, value)

        store.RecordStore._set_watermark = set_watermark  # type: ignore[method-assign]
    elif point == "keyword-save":
        _kill_before_manifest("indexers.keyword", trigger)
    elif point != "none":
        raise SystemExit(f"unknown kill point {point!r}; choose one of {sorted(POINTS)} or 'none'")


def _half_then_die(add: Callable[..., Any], trigger: _Trigger) -> Callable[..., Any]:
    def wrapped(ids: Any, vectors: Any, payloads: Any = None) -> Any:
        half = max(1, len(ids) // 2)
        add(ids[:half], vectors[:half], payloads[:half] if payloads is not None else None)
        trigger()
        return add(ids[half:], vectors[half:], payloads[half:] if payloads is not None else None)

    return wrapped


def _then_die(save: Callable[[], None], trigger: _Trigger) -> Callable[[], None]:
    def wrapped() -> None:
        save()
        trigger()

    return wrapped


def _kill_before_manifest(module_name: str, trigger: _Trigger) -> None:
    import importlib

    module = importlib.import_module(module_name)
    original = module.write_json_atomic

    def write_json_atomic(path: Path, data: Any) -> None:
        trigger()  # the data files of this save are written; the manifest naming them is not
        original(path, data)

    module.write_json_atomic = write_json_atomic


def _pause_after_batches(seconds: float) -> None:
    import time

    from engine import collection as collection_module

    original_add = collection_module.Collection.add

    def add(self: Any, *args: Any, **kwargs: Any) -> Any:
        added = original_add(self, *args, **kwargs)
        print(f"committed {len(added)}", flush=True)
        time.sleep(seconds)
        return added

    collection_module.Collection.add = add  # type: ignore[method-assign]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("home", type=Path)
    parser.add_argument("backend", choices=("faiss", "qdrant", "milvus"))
    parser.add_argument("--point", default="none", choices=(*POINTS, "none"))
    parser.add_argument("--nth", type=int, default=1)
    parser.add_argument("--count", type=int, default=60)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--start", type=int, default=0, help="number of the first synthetic report")
    parser.add_argument("--prefix", default="synth", help="id prefix and source of the synthetic reports")
    parser.add_argument("--delay", type=float, default=0.0, help="seconds to pause after each batch")
    parser.add_argument("--check", type=int, default=None, metavar="EXPECTED", help="only check the home")
    args = parser.parse_args(argv)
    if args.check is not None:  # Milvus Lite keeps its server for the life of the process that opened it
        from tests.reliability.test_crash import check_consistent

        check_consistent(args.home, args.check)
        return 0

    from engine.collection import Collection
    from engine.ingest import ingest_records
    from tests.reliability.tiny import register_hash_encoder, synthetic_reports

    encoder = register_hash_encoder()
    install(args.point, args.nth, args.backend)
    if args.delay:
        _pause_after_batches(args.delay)
    collection = Collection.open(args.home, "default", create=True, backend=args.backend)
    try:
        summary = ingest_records(
            collection,
            synthetic_reports(args.count, start=args.start, prefix=args.prefix),
            {"text": encoder},
            source=args.prefix,
            batch_size=args.batch_size,
            progress=False,
        )
    finally:
        collection.close()
    print(f"added {summary.added} already {summary.already_present}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
