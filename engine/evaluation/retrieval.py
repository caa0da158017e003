"""Retrieval evaluation: caption -> image R@k and image -> image P@k (same modality / body part).

Every method is measured on the same images in the same run: the encoders given (trained towers,
untrained towers, published models) and two baselines, "random" (seeded Gaussian vectors) and
"raw-pixel" (32x32 grey letterboxed thumbnails compared by cosine). Pure numpy metrics, as faiss
contrib's `evaluation.py`; matplotlib is imported only by `plot_retrieval`.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from tqdm import tqdm

from engine.encoders.base import l2_normalise
from engine.encoders.images import open_image, pixel_thumbnails
from engine.errors import ImageReadError
from engine.evaluation import write_results

if TYPE_CHECKING:
    from PIL import Image

    from engine.datasets.record import Record
    from engine.encoders.base import Encoder

logger = logging.getLogger(__name__)

DEFAULT_FIELDS: tuple[str, ...] = ("modality", "body_part")


class RandomEncoder:
    """Baseline: seeded Gaussian vectors for images and texts (chance level, measured)."""

    space = "random"
    modalities = frozenset({"image", "text"})

    def __init__(self, dim: int = 256, seed: int = 0) -> None:
        self.dim, self.name = dim, "random"
        self._rng = np.random.default_rng(seed)

    def encode_images(self, images: Sequence[Any]) -> np.ndarray:
        return l2_normalise(self._rng.standard_normal((len(images), self.dim)))

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        return l2_normalise(self._rng.standard_normal((len(texts), self.dim)))


class PixelEncoder:
    """Baseline: raw pixels, `size`x`size` grey letterboxed thumbnails, cosine similarity."""

    space = "pixels"
    modalities = frozenset({"image"})

    def __init__(self, size: int = 32) -> None:
        self.size, self.dim, self.name = size, size * size, "raw-pixel"

    def encode_images(self, images: Sequence[Image.Image]) -> np.ndarray:
        return pixel_thumbnails(images, self.size)

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        raise NotImplementedError("raw pixels embed no text")


def recall_at_k(
    scores: np.ndarray, targets: np.ndarray, ks: Sequence[int], groups: Sequence[Any] | None = None
) -> dict[str, float]:
    """Text -> image recall: share of queries whose target image ranks within the top k.

    Args:
        scores: float (n_queries, n_gallery), higher = closer.
        targets: int (n_queries,), the gallery index of each query's image.
        ks: cut-offs.
        groups: optional (n_gallery,) keys; every gallery image with its target's key is a hit too (images
            whose captions are identical: one caption cannot tell them apart).

    Returns:
        {"R@k": recall} for each k, plus "median_rank" (1-based rank of the first hit; ties broken by gallery
        order).
    """
    order = np.argsort(-scores, axis=1, kind="stable")
    targets = np.asarray(targets)
    if groups is None:
        hits = order == targets[:, None]
    else:
        keys = np.asarray(groups, dtype=object)
        hits = keys[order] == keys[targets][:, None]
    ranks = np.argmax(hits, axis=1) + 1
    out = {f"R@{k}": float(np.mean(ranks <= k)) for k in ks}
    out["median_rank"] = float(np.median(ranks))
    return out


def precision_at_k(scores: np.ndarray, labels: Sequence[str | None], k: int) -> tuple[float, float, int]:
    """Image -> image precision: share of each query's top k (itself excluded) that share its label.

    Only images with a label take part, as queries and as gallery.

    Args:
        scores: float (n, n) image-image similarities.
        labels: one label per image (None = unknown).
        k: cut-off.

    Returns:
        (mean P@k, expected P@k of a random ranking, number of queries).
    """
    known = np.array([label is not None for label in labels])
    if known.sum() < 2:
        return float("nan"), float("nan"), 0
    names = np.array([label for label in labels if label is not None], dtype=object)
    sub = np.array(scores, dtype=np.float64)[np.ix_(known, known)]
    np.fill_diagonal(sub, -np.inf)
    cut = min(k, len(names) - 1)
    top = np.argsort(-sub, axis=1, kind="stable")[:, :cut]
    same = names[top] == names[:, None]
    counts = Counter(names.tolist())
    chance = np.array([(counts[name] - 1) / (len(names) - 1) for name in names])
    return float(same.mean()), float(chance.mean()), int(len(names))


def _subset_metrics(
    image_vectors: np.ndarray,
    text_vectors: np.ndarray | None,
    text_rows: np.ndarray,
    labels: Mapping[str, Sequence[str | None]],
    ks: Sequence[int],
    k: int,
    caption_keys: Sequence[str | None] | None = None,
) -> dict[str, Any]:
    """Metrics of one method on one set of images (text queries at `text_rows` of the images; an image whose
    caption key equals the query's counts as found)."""
    out: dict[str, Any] = {"text_to_image": None, "image_to_image": {}}
    if text_vectors is not None and len(text_rows):
        out["text_to_image"] = recall_at_k(text_vectors @ image_vectors.T, text_rows, ks, caption_keys)
    image_scores = image_vectors @ image_vectors.T
    for name, values in labels.items():
        precision, _, queries = precision_at_k(image_scores, values, k)
        out["image_to_image"][f"{name}_P@{k}"] = precision if queries else None  # JSON has no NaN
        out["image_to_image"][f"{name}_queries"] = queries
    return out


def _encode(
    encoder: Encoder, images: Sequence[Any], captions: Sequence[str]
) -> tuple[np.ndarray, np.ndarray | None]:
    image_vectors = encoder.encode_images(images)
    text_vectors = encoder.encode_texts(list(captions)) if "text" in encoder.modalities and captions else None
    return image_vectors, text_vectors


def evaluate_retrieval(
    records: Sequence[Record],
    encoders: Mapping[str, Encoder],
    *,
    ks: Sequence[int] = (1, 5, 10),
    k: int = 10,
    fields: Sequence[str] = DEFAULT_FIELDS,
    baselines: bool = True,
    combine: Mapping[str, Sequence[str]] | None = None,
    seed: int = 0,
    progress: bool = True,
) -> dict[str, Any]:
    """Measure text -> image and image -> image retrieval of several methods on the same image records.

    Args:
        records: the evaluation images (e.g. `validation_split(...).validation`); records without an
            image file are ignored. Each image's query text is its caption (`training.data.query_caption`).
        encoders: method name -> encoder (image space; text -> image only when it also embeds text).
        ks: recall cut-offs for caption -> image.
        k: precision cut-off for image -> image.
        fields: record fields whose equality makes an image relevant (e.g. "modality", "body_part").
        baselines: add "random" and "raw-pixel" methods.
        combine: name -> method names whose image vectors are concatenated (query-time fusion of spaces).
        seed: seed of the random baseline.
        progress: show a tqdm bar while reading images.

    Returns:
        {"n_images", "n_text_queries", "ks", "k", "fields", "label_counts", "chance", "methods":
        {name: {"text_to_image": {"R@1", ..., "median_rank"} | None, "image_to_image": {"<field>_P@k",
        "<field>_queries"}, "by_source": {source: same}, "seconds"}}}.
    """
    from engine.training.data import image_records, query_caption

    items, images, unreadable = [], [], []
    for record in tqdm(image_records(records), desc="reading images", disable=not progress):
        try:
            images.append(open_image(record.image_path))
            items.append(record)
        except ImageReadError as e:  # one bad file must not sink the whole evaluation
            logger.warning("left out of the evaluation: %s", e)
            unreadable.append(record.id)
    captions_all = [query_caption(r) for r in items]
    keys = [caption_key(caption) for caption in captions_all]
    shared = Counter(key for key in keys if key)
    # one query per distinct caption (identical queries are not separate measurements); its image and every
    # other image with that caption count as found
    first_row: dict[str, int] = {}
    for row, key in enumerate(keys):
        if key:
            first_row.setdefault(key, row)
    text_rows = np.array(sorted(first_row.values()), dtype=np.int64)
    captions = [captions_all[i] for i in text_rows]
    labels = {name: [getattr(r, name) for r in items] for name in fields}
    methods: dict[str, Encoder] = {}
    if baselines:
        methods.update({"random": RandomEncoder(seed=seed), "raw-pixel": PixelEncoder()})
    methods.update(encoders)
    vectors: dict[str, tuple[np.ndarray, np.ndarray | None]] = {}
    results: dict[str, Any] = {}
    for name, encoder in methods.items():
        started = time.perf_counter()
        vectors[name] = _encode(encoder, images, captions)
        results[name] = _method_results(vectors[name], items, text_rows, labels, ks, k, keys)
        results[name]["seconds"] = round(time.perf_counter() - started, 2)
        logger.info("evaluated %s in %.1fs", name, results[name]["seconds"])
    for name, parts in (combine or {}).items():
        fused = l2_normalise(np.concatenate([vectors[part][0] for part in parts], axis=1))
        results[name] = _method_results((fused, None), items, text_rows, labels, ks, k, keys)
        results[name]["combines"] = list(parts)
    return {
        "n_images": len(items),
        "unreadable_images": unreadable,
        "n_text_queries": int(len(text_rows)),
        "n_images_with_a_caption": int(sum(shared.values())),
        "n_shared_caption_queries": int(sum(shared[keys[row]] > 1 for row in text_rows)),
        "ks": list(ks),
        "k": k,
        "fields": list(fields),
        "sources": dict(Counter(r.source for r in items)),
        "label_counts": {name: dict(Counter(v for v in values if v)) for name, values in labels.items()},
        "chance": _chance(items, labels, ks, k, [keys[row] for row in text_rows], shared),
        "methods": results,
    }


def _method_results(
    vectors: tuple[np.ndarray, np.ndarray | None],
    items: Sequence[Record],
    text_rows: np.ndarray,
    labels: Mapping[str, Sequence[str | None]],
    ks: Sequence[int],
    k: int,
    caption_keys: Sequence[str | None],
) -> dict[str, Any]:
    """Overall metrics plus the same per source (queries and gallery restricted to that source)."""
    image_vectors, text_vectors = vectors
    out = _subset_metrics(image_vectors, text_vectors, text_rows, labels, ks, k, caption_keys)
    out["by_source"] = {}
    sources = np.array([r.source for r in items])
    for source in sorted(set(sources.tolist())):
        rows = np.flatnonzero(sources == source)
        position = {row: i for i, row in enumerate(rows)}
        query_mask = np.isin(text_rows, rows)
        sub_text = text_vectors[query_mask] if text_vectors is not None else None
        sub_rows = np.array([position[row] for row in text_rows[query_mask]], dtype=np.int64)
        sub_labels = {name: [values[i] for i in rows] for name, values in labels.items()}
        out["by_source"][source] = _subset_metrics(
            image_vectors[rows], sub_text, sub_rows, sub_labels, ks, k, [caption_keys[i] for i in rows]
        )
    return out


def _chance(
    items: Sequence[Record],
    labels: Mapping[str, Sequence[str | None]],
    ks: Sequence[int],
    k: int,
    query_keys: Sequence[str | None] = (),
    group_sizes: Mapping[str, int] | None = None,
) -> dict:
    """Expected metrics of a random ranking over the same gallery (a query with g images sharing its caption
    finds one in the top k with probability 1 - C(n-g, k) / C(n, k))."""
    n = max(len(items), 1)
    dummy = np.zeros((len(items), len(items)))
    image = {f"{name}_P@{k}": precision_at_k(dummy, values, k)[1] for name, values in labels.items()}
    sizes = [max((group_sizes or {}).get(key, 1), 1) if key else 1 for key in query_keys] or [1]
    text = {f"R@{cut}": float(np.mean([_random_hit(n, g, cut) for g in sizes])) for cut in ks}
    return {"text_to_image": text, "image_to_image": image}


def _random_hit(n: int, relevant: int, k: int) -> float:
    """Probability that a uniformly random ranking of n items puts one of `relevant` items in its top k."""
    miss = 1.0
    for i in range(min(k, n)):
        miss *= max(n - relevant - i, 0) / (n - i)
    return 1.0 - miss


def caption_key(caption: str | None) -> str | None:
    """Captions compared case- and space-insensitively (identical captions name the same set of images)."""
    return " ".join(caption.lower().split()) if caption else None


def plot_retrieval(results: Mapping[str, Any], path: str | Path) -> Path:
    """Save a two-panel bar chart (caption -> image R@k; image -> image P@k per field) as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    methods = list(results["methods"])
    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 4.8))
    width = 0.8 / max(len(methods), 1)
    cut_names = [f"R@{cut}" for cut in results["ks"]]
    field_names = [f"{name}_P@{results['k']}" for name in results["fields"]]
    for i, name in enumerate(methods):
        method = results["methods"][name]
        text = method["text_to_image"] or {}
        left.bar(
            np.arange(len(cut_names)) + i * width, [text.get(c, 0.0) for c in cut_names], width, label=name
        )
        values = [method["image_to_image"].get(f) or 0.0 for f in field_names]
        right.bar(np.arange(len(field_names)) + i * width, values, width, label=name)
    left.set_xticks(np.arange(len(cut_names)) + 0.4 - width / 2, cut_names)
    left.set_title(f"caption -> image ({results['n_text_queries']} queries, {results['n_images']} images)")
    right.set_xticks(np.arange(len(field_names)) + 0.4 - width / 2, field_names)
    right.set_title("image -> image, same label in top k")
    for axis in (left, right):
        axis.set_ylim(0, 1)
        axis.grid(axis="y", alpha=0.3)
    right.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.tight_layout()
    out = Path(path)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def format_retrieval_table(results: Mapping[str, Any]) -> str:
    """A plain-text table of every method's figures (what `benchmarks/retrieval.py` prints)."""
    cuts = [f"R@{cut}" for cut in results["ks"]]
    fields = [f"{name}_P@{results['k']}" for name in results["fields"]]
    header = f"{'method':<22}" + "".join(f"{c:>8}" for c in cuts) + "".join(f"{f:>16}" for f in fields)
    lines = [header, "-" * len(header)]
    rows = [("chance", results["chance"])] + list(results["methods"].items())
    for name, method in rows:
        text = method.get("text_to_image") or {}
        cells = "".join(f"{text[c]:>8.3f}" if c in text else f"{'-':>8}" for c in cuts)
        cells += "".join(
            f"{value:>16.3f}" if (value := method["image_to_image"].get(f)) is not None else f"{'-':>16}"
            for f in fields
        )
        lines.append(f"{name:<22}{cells}")
    return "\n".join(lines)


def run_retrieval_benchmark(
    home: str | Path,
    data_dir: str | Path,
    out_json: str | Path | None = None,
    out_plot: str | Path | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """The held-out benchmark: trained and untrained towers of `<home>/models/{clip,ssl}`, their fusion,
    and the random / raw-pixel baselines, all on the validation split of the shared data, in one run.

    Args:
        home: the medsearch home folder (checkpoints under `models/`).
        data_dir: the shared datasets folder (vqa-rad, slake, medpix-2.0).
        out_json: where to save the results (optional).
        out_plot: where to save the PNG plot (optional).
        progress: tqdm bars.

    Returns:
        `evaluate_retrieval`'s dict plus "split_rule" and "checkpoints" (each card's training summary).
    """

    from engine.encoders.registry import create
    from engine.encoders.trained import TrainedEncoder
    from engine.training.checkpoint import read_card
    from engine.training.data import load_shared_records, validation_split

    split = validation_split(load_shared_records(data_dir))
    encoders: dict[str, Encoder] = {}
    checkpoints: dict[str, Any] = {}
    text_encoder = None
    for kind in ("clip", "ssl"):
        folder = Path(home) / "models" / kind
        if not (folder / "config.json").is_file():
            logger.warning("no %s checkpoint in %s: train it first (medsearch train %s)", kind, folder, kind)
            continue
        if kind == "clip":
            text_encoder = create("minilm")
        card = read_card(folder)
        checkpoints[kind] = {
            "path": f"<home>/models/{kind}",
            "training": card.get("training"),
            "split_rule": card.get("validation_split", {}).get("rule"),
        }
        if checkpoints[kind]["split_rule"] not in (None, split.rule):
            logger.warning("%s was trained with another split (%s)", folder, checkpoints[kind]["split_rule"])
        encoders[f"untrained-{kind}"] = TrainedEncoder(str(folder), untrained=True, text_encoder=text_encoder)
        encoders[f"trained-{kind}"] = TrainedEncoder(str(folder), text_encoder=text_encoder)
    combine = {"trained-clip+ssl": ["trained-clip", "trained-ssl"]} if len(checkpoints) == 2 else None
    results = evaluate_retrieval(split.validation, encoders, combine=combine, progress=progress)
    results.update({"split_rule": split.rule, "checkpoints": checkpoints})
    if out_json:
        write_results(out_json, results, indent=2)
    if out_plot:
        plot_retrieval(results, out_plot)
    return results
