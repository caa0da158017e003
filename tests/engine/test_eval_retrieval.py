"""Retrieval metrics on tiny sets with known answers."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from engine.datasets.record import Record
from engine.encoders.base import l2_normalise
from engine.evaluation import write_results
from engine.evaluation.retrieval import (
    evaluate_retrieval,
    format_retrieval_table,
    plot_retrieval,
    precision_at_k,
    recall_at_k,
)


def test_recall_at_k_counts_the_target_rank() -> None:
    scores = np.array([[0.9, 0.1, 0.0], [0.8, 0.5, 0.1], [0.1, 0.2, 0.3]])
    result = recall_at_k(scores, np.array([0, 1, 0]), ks=(1, 2, 3))
    # ranks: query 0 -> 1, query 1 -> 2, query 2 -> 3
    assert result == {
        "R@1": pytest.approx(1 / 3),
        "R@2": pytest.approx(2 / 3),
        "R@3": 1.0,
        "median_rank": 2.0,
    }


def test_recall_counts_images_with_the_same_caption_as_hits() -> None:
    """Images 0 and 2 share a caption: a query for either is answered by whichever ranks first."""
    scores = np.array([[0.1, 0.5, 0.9], [0.9, 0.5, 0.1]])
    plain = recall_at_k(scores, np.array([0, 1]), ks=(1, 2))
    grouped = recall_at_k(scores, np.array([0, 1]), ks=(1, 2), groups=["a", "b", "a"])
    assert plain["R@1"] == 0.0 and grouped["R@1"] == 0.5  # query 0 finds image 2 (same caption) first
    assert grouped["R@2"] == 1.0 and grouped["median_rank"] == 1.5


def test_random_hit_probability() -> None:
    from engine.evaluation.retrieval import _random_hit

    assert _random_hit(10, 1, 3) == pytest.approx(0.3)
    assert _random_hit(10, 2, 1) == pytest.approx(0.2)
    assert _random_hit(10, 2, 2) == pytest.approx(1 - (8 / 10) * (7 / 9))
    assert _random_hit(3, 3, 1) == 1.0


def test_precision_at_k_excludes_self_and_unlabelled() -> None:
    labels = ["head", "head", "chest", "chest", None]
    scores = np.eye(5) + np.array(
        [
            [0, 0.9, 0.1, 0.2, 0.99],
            [0.9, 0, 0.3, 0.1, 0.99],
            [0.1, 0.3, 0, 0.8, 0.99],
            [0.2, 0.1, 0.8, 0, 0.99],
            [0.99] * 5,
        ]
    )
    precision, chance, queries = precision_at_k(scores, labels, k=1)
    assert (precision, queries) == (1.0, 4)
    assert chance == pytest.approx(1 / 3)  # one other same-label image among three candidates


class _LevelEncoder:
    """Images -> one-hot of their grey level; texts "level N" -> one-hot of N (so caption i finds image i)."""

    name, space, dim = "levels", "clip", 8
    modalities = frozenset({"image", "text"})

    def encode_images(self, images: Sequence[Image.Image]) -> np.ndarray:
        levels = [int(np.asarray(image.convert("L")).min()) // 4 for image in images]
        return l2_normalise(np.eye(self.dim)[levels])

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        return l2_normalise(np.eye(self.dim)[[int(text.split()[-1]) for text in texts]])


@pytest.fixture()
def striped_records(tmp_path: Path) -> list[Record]:
    """8 images: background level 4N (caption "level N"), even N horizontal stripes ("head"), odd N vertical ("chest")."""
    records = []
    for level in range(8):
        pixels = np.full((48, 48), level * 4, dtype=np.uint8)
        stripes = (np.arange(48) // 4) % 2 == 0
        if level % 2 == 0:
            pixels[stripes] = 255
        else:
            pixels[:, stripes] = 255
        path = tmp_path / f"image{level}.png"
        Image.fromarray(pixels).save(path)
        records.append(
            Record(
                id=f"folder:image{level}",
                kind="image+text",
                source="folder",
                image_path=str(path),
                caption=f"level {level}",
                body_part="head" if level % 2 == 0 else "chest",
                modality="CT",
            )
        )
    return records


def test_evaluate_retrieval_known_answers(striped_records: list[Record], tmp_path: Path) -> None:
    results = evaluate_retrieval(striped_records, {"levels": _LevelEncoder()}, progress=False)
    assert results["n_images"] == 8 and results["n_text_queries"] == 8
    levels = results["methods"]["levels"]
    assert levels["text_to_image"]["R@1"] == 1.0  # every caption finds its own image first
    pixels = results["methods"]["raw-pixel"]
    assert pixels["text_to_image"] is None
    assert pixels["image_to_image"]["body_part_P@10"] == pytest.approx(3 / 7)  # 3 same-stripe of 7 others
    # with k=3 the three nearest raw-pixel neighbours share the stripe direction
    small = evaluate_retrieval(striped_records, {}, k=3, progress=False)
    assert small["methods"]["raw-pixel"]["image_to_image"]["body_part_P@3"] == 1.0
    assert small["methods"]["raw-pixel"]["image_to_image"]["modality_P@3"] == 1.0
    assert results["chance"]["text_to_image"]["R@1"] == pytest.approx(1 / 8)
    assert set(results["methods"]) == {"random", "raw-pixel", "levels"}
    json.dumps(results)  # JSON-serialisable as the benchmark saves it
    assert plot_retrieval(results, tmp_path / "plot.png").stat().st_size > 0


def test_identical_captions_count_every_image_they_describe(striped_records: list[Record]) -> None:
    """Two images captioned alike: the caption query of each is found when either image ranks first."""
    twins = [replace(r, caption="level 0") if r.caption == "level 1" else r for r in striped_records]
    results = evaluate_retrieval(twins, {"levels": _LevelEncoder()}, progress=False)
    # one query per distinct caption: 7 queries, one of them naming two images
    assert results["n_text_queries"] == 7 and results["n_shared_caption_queries"] == 1
    assert results["n_images_with_a_caption"] == 8
    assert results["methods"]["levels"]["text_to_image"]["R@1"] == 1.0
    n = len(twins)
    assert results["chance"]["text_to_image"]["R@1"] == pytest.approx((6 * 1 / n + 1 * 2 / n) / 7)


def test_an_unreadable_image_is_left_out_not_fatal(striped_records: list[Record], tmp_path: Path) -> None:
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not a png")
    bad = replace(striped_records[0], id="folder:broken", image_path=str(broken))
    results = evaluate_retrieval([*striped_records, bad], {"levels": _LevelEncoder()}, progress=False)
    assert results["n_images"] == 8 and results["unreadable_images"] == ["folder:broken"]
    assert results["methods"]["levels"]["text_to_image"]["R@1"] == 1.0


def test_unlabelled_source_has_no_precision(striped_records: list[Record], tmp_path: Path) -> None:
    """A source whose images carry no label has no P@k: null in the JSON (strict JSON has no NaN)."""
    unlabelled = Record(
        id="other:image",
        kind="image",
        source="other",
        image_path=striped_records[0].image_path,
        caption="unlabelled",
    )
    results = evaluate_retrieval([*striped_records, unlabelled], {}, progress=False)
    other = results["methods"]["raw-pixel"]["by_source"]["other"]["image_to_image"]
    assert other["body_part_P@10"] is None and other["body_part_queries"] == 0
    assert results["methods"]["raw-pixel"]["by_source"]["folder"]["image_to_image"]["body_part_P@10"] > 0
    json.dumps(results, allow_nan=False)
    assert "raw-pixel" in format_retrieval_table(results)
    assert plot_retrieval(results, tmp_path / "plot.png").stat().st_size > 0


def test_identical_image_query_retrieves_itself(striped_records: list[Record]) -> None:
    combined = evaluate_retrieval(
        striped_records,
        {"levels": _LevelEncoder()},
        combine={"levels+pixels": ["levels", "raw-pixel"]},
        progress=False,
    )
    assert combined["methods"]["levels+pixels"]["combines"] == ["levels", "raw-pixel"]
    from engine.evaluation.retrieval import PixelEncoder

    images = [Image.open(r.image_path) for r in striped_records]
    vectors = PixelEncoder().encode_images(images)
    scores = vectors @ vectors.T
    assert recall_at_k(scores, np.arange(8), ks=(1,))["R@1"] == 1.0


def test_write_results_is_strict_json(tmp_path: Path) -> None:
    """Benchmarks save through `write_results`: a metric averaged over nothing (NaN) is saved as null."""
    out = write_results(
        tmp_path / "sub" / "results.json",
        {"closed": 0.5, "knowledge": float("nan"), "rows": [float("inf"), 1, ("a", float("-inf"))]},
    )

    def refuse(constant: str) -> None:
        raise AssertionError(f"non-standard JSON constant {constant}")

    saved = json.loads(out.read_text(), parse_constant=refuse)
    assert saved == {"closed": 0.5, "knowledge": None, "rows": [None, 1, ["a", None]]}
