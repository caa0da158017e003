"""Workspace: the one object the CLI, the API and notebooks build from Settings.

It loads each model once per process (encoders are cached by registry name), opens collections and hands out
search services. Everything it writes lives under `settings.home`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
import secrets
import threading
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from engine import datasets
from engine.collection import Collection, list_collections
from engine.encoders import Encoder
from engine.encoders import create as create_encoder
from engine.errors import CollectionError
from engine.ingest import IngestSummary, ingest_records
from engine.knowledge import Knowledge
from engine.search import SearchService
from engine.settings import Settings

if TYPE_CHECKING:
    from engine.rag.base import Generator
    from engine.vqa.service import Answer, Question, VqaService
    from kg.graph import ConceptGraph

logger = logging.getLogger(__name__)

IMAGE_SPACES = ("clip", "ssl")


class Workspace:
    """Models, collections and services for one medsearch home folder."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._encoders: dict[str, Encoder] = {}
        self._collections: dict[str, Collection] = {}
        self._services: dict[str, SearchService] = {}
        self._knowledge: Knowledge | None = None
        self._vqa: VqaService | None = None
        self._generators: dict[str, Generator] = {}
        self._lock = threading.RLock()
        self._pin = threading.local()  # this thread's ExitStack of pinned collections, inside pinned()

    # ------------------------------------------------------------------ models
    def encoder(self, name: str) -> Encoder:
        """The encoder of that registry name, loaded once."""
        with self._lock:
            if name not in self._encoders:
                self._encoders[name] = create_encoder(name, **self._encoder_options(name))
            return self._encoders[name]

    def _encoder_options(self, name: str) -> dict[str, Any]:
        """Settings an encoder family takes (MiniLM: how query batches run: onnxruntime, a trace, or eager)."""
        if name.partition(":")[0] == "minilm":
            encoders = self.settings.encoders
            return {"onnx": encoders.minilm_onnx, "traced": encoders.minilm_traced}
        return {}

    def knowledge(self) -> Knowledge | None:
        """The knowledge graph and linker (built from the shared ontologies, cached under home/kg), or None when
        disabled in settings."""
        if not self.settings.kg_enabled:
            return None
        with self._lock:
            if self._knowledge is None:
                self._knowledge = Knowledge.load(self.settings.kg_dir, self.settings.data)
            return self._knowledge

    def model_dir(self, space: str) -> Path:
        """Where `medsearch train <space>` writes its checkpoint: <home>/models/<space>."""
        return (self.settings.models_dir / space).resolve()

    def encoder_name(self, space: str) -> str | None:
        """The registry name of a space's encoder: from settings, else this home's trained checkpoint if any."""
        configured = getattr(self.settings.encoders, space)
        if configured:
            return configured
        if space in IMAGE_SPACES and (self.model_dir(space) / "config.json").is_file():
            return f"trained:{self.model_dir(space)}"
        return None

    def ingest_encoders(self) -> dict[str, Encoder]:
        """space -> encoder for ingest: text, and the image spaces whose encoder is configured or trained."""
        names = {space: self.encoder_name(space) for space in ("text", *IMAGE_SPACES)}
        return {space: self.encoder(name) for space, name in names.items() if name}

    def train(
        self,
        space: str,
        *,
        epochs: int | None = None,
        force: bool = False,
        progress: bool = True,
        from_clip: bool = True,
    ) -> Path:
        """Train this home's image encoder of `space` ("clip" or "ssl") on the shared images; returns the
        checkpoint folder. Refuses to replace an existing checkpoint unless `force` (collections embedded with
        it would no longer match: re-ingest them into a new collection). The ssl tower starts from the backbone
        of this home's trained clip tower when there is one of the same architecture and held-out split
        (`from_clip=False`: from random weights)."""
        from engine import training

        if space not in IMAGE_SPACES:
            raise CollectionError(f"cannot train {space!r}: choose one of {list(IMAGE_SPACES)}")
        out = self.model_dir(space)
        if (out / "config.json").is_file() and not force:
            raise CollectionError(f"a trained {space} model exists at {out}; pass --force to replace it")
        records = training.load_shared_records(require_data_dir(self.settings))
        overrides = {"epochs": epochs} if epochs else {}
        if space == "clip":
            config = training.ClipTrainConfig(**overrides)
            path = training.train_clip(
                records, out, config, progress=progress, text_encoder=self.encoder("minilm")
            )
        else:
            config = training.SslTrainConfig(**overrides)
            if from_clip and (start := self._clip_start(records, config)) is not None:
                config = dataclasses.replace(config, init_from=str(start))
            path = training.train_ssl(records, out, config, progress=progress)
        self._encoders.pop(f"trained:{out}", None)  # a cached copy of the old weights must not survive
        return path

    def _clip_start(self, records: list, config: Any) -> Path | None:
        """This home's clip checkpoint when the ssl tower may start from it: same backbone, and trained with the
        same held-out split (else its weights would carry images the ssl figures count as held out)."""
        from engine.training import validation_split
        from engine.training.checkpoint import read_card, read_config

        clip = self.model_dir("clip")
        if not (clip / "config.json").is_file():
            return None
        if read_config(clip).get("backbone") != config.backbone:
            logger.warning("ssl starts from random weights: %s has another backbone", clip)
            return None
        rule = read_card(clip).get("validation_split", {}).get("rule")
        if rule != validation_split(records, config.split).rule:
            logger.warning("ssl starts from random weights: %s was trained with another held-out split", clip)
            return None
        return clip

    def ensure_trained(self, progress: bool = True) -> dict[str, Path]:
        """Train the image encoders whose checkpoints are missing (the demo's first run); reuse them after."""
        trained = {}
        for space in IMAGE_SPACES:
            if getattr(self.settings.encoders, space) or (self.model_dir(space) / "config.json").is_file():
                continue
            logger.info(
                "no trained %s encoder in %s: training it (about 5 minutes on 2 cores)",
                space,
                self.model_dir(space),
            )
            trained[space] = self.train(space, progress=progress)
        return trained

    # ------------------------------------------------------------------ VQA and generators
    def train_vqa(self, *, force: bool = False) -> Path:
        """Fit the VQA model on the VQA-RAD and SLAKE train questions with this home's encoders and graph; saves
        it under <home>/models/vqa (refuses to replace one unless `force`)."""
        from engine.vqa.service import MODEL_FILE, VqaService, training_items

        out = self.model_dir("vqa")
        if (out / MODEL_FILE).is_file() and not force:
            raise CollectionError(f"a trained VQA model exists at {out}; pass --force to replace it")
        items = training_items(require_data_dir(self.settings))
        names = self._vqa_encoder_names()
        knowledge = self.knowledge()
        service = VqaService.fit(
            items,
            self.encoder(_plain(names["text"])),
            {space: self.encoder(_plain(name)) for space, name in names.items() if space != "text"},
            names,
            graph=knowledge.graph if knowledge else None,
        )
        service.save(out)
        with self._lock:
            self._vqa = None
        return out

    def ensure_vqa(self) -> Path | None:
        """Train the VQA model when missing (the demo's first run); None when one is already there."""
        from engine.vqa.service import MODEL_FILE

        if (self.model_dir("vqa") / MODEL_FILE).is_file():
            return None
        logger.info(
            "no trained VQA model in %s: training it (a few minutes on 2 cores)", self.model_dir("vqa")
        )
        return self.train_vqa()

    def _vqa_encoder_names(self) -> dict[str, str]:
        """space -> encoder name, with ``#<fingerprint>`` appended for this home's trained checkpoints, so a
        model fitted on features of retrained weights (same path, new weights) is recognised as stale."""
        names = {space: self.encoder_name(space) for space in ("text", *IMAGE_SPACES)}
        return {space: _fingerprinted(name) for space, name in names.items() if name}

    def vqa(self) -> VqaService:
        """The trained VQA model of this home, loaded once (with the knowledge graph attached when enabled).

        Raises:
            VqaModelMissingError: not trained yet. CollectionError: trained with other encoders than this home's.
        """
        from engine.vqa.service import VqaService

        with self._lock:
            if self._vqa is None:

                def graph() -> ConceptGraph | None:
                    knowledge = self.knowledge()
                    return knowledge.graph if knowledge else None

                service = VqaService.load(self.model_dir("vqa"), graph)
                current = self._vqa_encoder_names()
                stale = {s: n for s, n in service.encoder_names.items() if current.get(s) != n}
                if stale:
                    raise CollectionError(
                        f"the VQA model was trained with encoders {stale} that this home no longer uses: "
                        "run `medsearch train vqa --force`"
                    )
                self._vqa = service
            return self._vqa

    def ask(
        self, questions: list[Question], *, generator: str | None = None, phrase: bool = False
    ) -> list[Answer]:
        """Answer questions about images with the trained VQA model (models loaded once per workspace).

        Args:
            generator: registry name ("local", "extractive", "openai:URL", "vllm:MODEL") that phrases a sentence
                when `phrase`; None with `phrase` -> a template sentence.
        """
        service = self.vqa()
        names = service.encoder_names
        return service.answer(
            questions,
            self.encoder(_plain(names["text"])),
            {space: self.encoder(_plain(name)) for space, name in names.items() if space != "text"},
            generator=self.generator(generator) if (phrase and generator) else None,
            phrase=phrase,
        )

    def generator(self, name: str) -> Generator:
        """The generator of that registry name, loaded once (the local model caches converted weights in
        <home>/models/generators)."""
        from engine.rag import create as create_generator

        with self._lock:
            if name not in self._generators:
                options: dict[str, Any] = {}
                if name.partition(":")[0] == "local":  # "local" and "local:PATH.gguf"
                    options["cache_dir"] = self.settings.models_dir / "generators"
                self._generators[name] = create_generator(name, **options)
            return self._generators[name]

    # ------------------------------------------------------------------ collections
    def collection_names(self) -> list[str]:
        return list_collections(self.settings.home)

    def collection(
        self, name: str | None = None, *, create: bool = False, backend: str | None = None
    ) -> Collection:
        """Open (and cache) a collection; `create` makes it with `backend` (default from settings)."""
        name = name or self.settings.collection
        with self._lock:
            if name not in self._collections:
                backend = backend or (self.settings.index.backend if create else None)
                self._collections[name] = Collection.open(
                    self.settings.home,
                    name,
                    create=create,
                    backend=backend,
                    backend_options=self.settings.index.options_for(backend) if backend else None,
                )
                pinned = getattr(self._pin, "stack", None)
                if pinned is not None:
                    pinned.enter_context(self._collections[name].pinned())
            elif backend and backend != self._collections[name].manifest["backend"]:
                Collection.open(self.settings.home, name, backend=backend)  # raises the explanatory error
            return self._collections[name]

    def is_current(self) -> bool:
        """Whether every open collection's loaded indexes hold every change in its SQLite (see `refresh`)."""
        with self._lock:
            opened = list(self._collections.values())
        return all(collection.is_current() for collection in opened)

    def refresh(self) -> None:
        """Replay changes (e.g. made by another process) into the loaded indexes of every open collection.
        Call it holding the exclusive side of the API's lock, when `is_current()` is False."""
        with self._lock:
            opened = list(self._collections.values())
        for collection in opened:
            collection.refresh()

    @contextmanager
    def pinned(self) -> Iterator[Workspace]:
        """In this thread, searches serve the loaded indexes as they are, replaying no changes (collections
        opened inside the block too), so many threads can search at once. See `Collection.pinned`."""
        if getattr(self._pin, "stack", None) is not None:  # nested
            yield self
            return
        with ExitStack() as stack:
            with self._lock:
                for collection in self._collections.values():
                    stack.enter_context(collection.pinned())
            self._pin.stack = stack
            try:
                yield self
            finally:
                self._pin.stack = None

    def search_service(self, name: str | None = None) -> SearchService:
        name = name or self.settings.collection
        with self._lock:
            if name not in self._services:
                collection = self.collection(name)
                self._services[name] = SearchService(
                    collection,
                    lambda space: self.encoder(collection.spaces[space]["encoder"]),
                    self.knowledge,
                )
            return self._services[name]

    def ingest(
        self,
        dataset: str,
        path: str | Path,
        *,
        collection: str | None = None,
        backend: str | None = None,
        progress: bool = True,
        **options: Any,
    ) -> IngestSummary:
        """Load a dataset folder (validated before anything is written) and ingest it into a collection."""
        if dataset == "dicom":  # de-identified renderings go to the home; the source folder stays read-only
            options.setdefault("out_dir", self.derived_dir("dicom", path))
            options.setdefault("salt", self.secret("dicom_salt"))
        loaded = datasets.load_with_report(dataset, path, **options)
        target = self.collection(collection, create=True, backend=backend)
        summary = ingest_records(
            target,
            loaded.records,
            self.ingest_encoders(),
            source=dataset,
            batch_size=self.settings.ingest_batch_size,
            decode_workers=self.settings.decode_workers,
            linker=knowledge.link_records if (knowledge := self.knowledge()) else None,
            progress=progress,
        )
        summary.missing_images = len(loaded.skipped)
        return summary

    def derived_dir(self, kind: str, source: str | Path) -> Path:
        """<home>/derived/<kind>/<hash of the source path>: files medsearch derives from a source (never in it)."""
        digest = hashlib.sha256(str(Path(source).resolve()).encode()).hexdigest()[:16]
        return self.settings.home / "derived" / kind / digest

    def secret(self, name: str) -> str:
        """A random secret kept in <home>/secrets/<name> (mode 0600), created on first use (e.g. the DICOM
        de-identification salt: stable ids and date shifts across ingests, unguessable without the home)."""
        path = self.settings.home / "secrets" / name
        if not path.is_file():
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(descriptor, "w") as handle:
                handle.write(secrets.token_hex(32))
        return path.read_text().strip()

    def relink(self, collection: str | None = None) -> int:
        """Re-link every record of a collection with the current knowledge graph; returns records relinked."""
        knowledge = self.knowledge()
        if knowledge is None:
            raise CollectionError("the knowledge graph is disabled (kg_enabled = false)")
        target = self.collection(collection)
        done = 0
        for batch in target.iter_records():
            target.replace_concepts(knowledge.link_records(batch))
            done += len(batch)
        logger.info("relinked %d records of %s", done, target.name)
        return done

    def delete(self, ids: list[str], collection: str | None = None) -> int:
        return self.collection(collection).delete(ids)

    def close(self) -> None:
        with self._lock:
            for opened in self._collections.values():
                opened.close()
            self._collections.clear()
            self._services.clear()

    def __enter__(self) -> Workspace:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _fingerprinted(name: str) -> str:
    """``trained:PATH`` -> ``trained:PATH#<12 hex of its model card>`` (the card records when and how the
    weights were trained); other names unchanged."""
    if not name.startswith("trained:"):
        return name
    card = Path(name.partition(":")[2]) / "model_card.json"
    digest = hashlib.sha256(card.read_bytes()).hexdigest()[:12] if card.is_file() else "nocard"
    return f"{name}#{digest}"


def _plain(name: str) -> str:
    """An encoder name without the fingerprint `_fingerprinted` adds."""
    return name.partition("#")[0] if name.startswith("trained:") else name


def require_data_dir(settings: Settings) -> Path:
    if settings.data is None or not Path(settings.data).is_dir():
        raise CollectionError(
            f"shared data folder not found ({settings.data}); set MEDSEARCH_DATA to the folder holding "
            "vqa-rad/, slake/, medpix-2.0/, iu-xray/"
        )
    return Path(settings.data)
