"""Image spaces end to end: a (tiny) trained clip checkpoint embeds images at ingest, fills the space for records
stored before it existed, and answers image queries from the CLI and the batch command."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from engine.encoders.images import ImagePreprocess
from engine.search import SearchRequest
from engine.workspace import Workspace
from tests.engine.conftest import make_settings
from ui.cli import main


@pytest.fixture(scope="module")
def clip_checkpoint(tmp_path_factory, shared_data: Path, minilm) -> Path:
    """A clip-space checkpoint trained for a few steps on 16 real shared images (32 px, 32-d)."""
    from engine.training import ClipTrainConfig, load_shared_records, train_clip
    from engine.training.data import image_records

    records = [r for r in image_records(load_shared_records(shared_data)) if r.source != "medpix"][:16]
    config = ClipTrainConfig(
        image=ImagePreprocess(size=32),
        epochs=2,
        batch_size=4,
        dim=32,
        warmup_steps=1,
        max_seconds=None,
        log_every=1,
        threads=1,
    )
    return train_clip(
        records, tmp_path_factory.mktemp("models") / "clip", config, progress=False, text_encoder=minilm
    )


def test_new_space_is_filled_for_stored_records_and_answers_image_queries(
    tmp_path, mini_vqa_rad, minilm, clip_checkpoint
):
    home = tmp_path / "home"
    with Workspace(make_settings(home, kg_enabled=False)) as text_only:
        text_only._encoders["minilm"] = minilm
        assert text_only.ingest("vqa-rad", mini_vqa_rad, progress=False).added == 3
    settings = make_settings(home, kg_enabled=False, encoders={"clip": f"trained:{clip_checkpoint}"})
    with Workspace(settings) as workspace:
        workspace._encoders["minilm"] = minilm
        summary = workspace.ingest("vqa-rad", mini_vqa_rad, progress=False)
        assert summary.added == 0 and summary.embedded == {"clip": 3}
        collection = workspace.collection()
        assert collection.vector_count("clip") == 3 and collection.index("clip").count() == 3
        again = workspace.ingest("vqa-rad", mini_vqa_rad, progress=False)
        assert again.embedded == {}  # nothing left to fill
        record = collection.get(next(iter(collection.index("clip").ids())))
        from engine.ingest import load_image

        hits = workspace.search_service().search(SearchRequest(image=load_image(record.image_path), k=3))
        assert hits[0].id == record.id and hits[0].score > 0.99
        assert hits[0].why.spaces == ("clip",) and "dense:clip:image" in hits[0].why.ranks
        text_hits = workspace.search_service().search(
            SearchRequest(text="chest x-ray", k=3, space="clip", mode="dense")
        )
        assert len(text_hits) == 3  # text -> image through the trained projection


def test_cli_image_search_and_batch(tmp_path, mini_vqa_rad, clip_checkpoint, capsys, monkeypatch):
    home = tmp_path / "home"
    monkeypatch.setenv("MEDSEARCH_ENCODERS__CLIP", f"trained:{clip_checkpoint}")
    monkeypatch.setenv("MEDSEARCH_KG_ENABLED", "false")
    assert main(["--home", str(home), "ingest", "vqa-rad", str(mini_vqa_rad)]) == 0
    image = next((mini_vqa_rad / "images").glob("synpic[0-8]*.jpg"))
    capsys.readouterr()
    assert main(["--home", str(home), "search", "--image", str(image), "--k", "2", "--json"]) == 0
    hits = json.loads(capsys.readouterr().out)
    assert hits[0]["image_path"].endswith(image.name)
    queries = tmp_path / "q.jsonl"
    queries.write_text(json.dumps({"qid": "img", "image": str(image)}) + "\n")
    output = tmp_path / "hits.jsonl"
    assert main(["--home", str(home), "search-batch", "--input", str(queries), "--output", str(output)]) == 0
    [line] = [json.loads(x) for x in output.read_text().splitlines()]
    assert line["qid"] == "img" and line["hits"][0]["id"] == hits[0]["id"]
