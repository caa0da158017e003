"""Bad input, fuzzed with hypothesis: every case gets a clear error naming the file (or field) and the problem,
and nothing already stored is lost.

Images (truncated / bit-flipped PNG and JPEG, zero bytes, random bytes, text with an image extension,
decompression bombs), malformed DICOM, malformed JSONL / CSV sidecars, odd unicode and overlong queries, bad
filter syntax and wrong vector dimensions. Example counts are bounded so the file runs in seconds; raise
them with MEDSEARCH_FUZZ_EXAMPLES for a longer hunt.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import sqlite3
import struct
import tempfile
import zlib
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from engine.collection import Collection
from engine.datasets.folder import load_folder
from engine.errors import CollectionError, DatasetFormatError, ImageReadError
from engine.ingest import ingest_records, load_image
from engine.search import MAX_QUERY_CHARS
from indexers import DimensionMismatchError, Filter, FilterError, parse_filters
from indexers.errors import IndexerError
from tests.reliability.conftest import AUTH, rel_settings
from tests.reliability.tiny import DIM, ENCODER, HashEncoder, register_hash_encoder, synthetic_reports

EXAMPLES = int(os.environ.get("MEDSEARCH_FUZZ_EXAMPLES", "30"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)


def _encoded(fmt: str) -> bytes:
    gradient = np.add.outer(np.arange(48), np.arange(40)).astype(np.uint8) * 2
    buffer = io.BytesIO()
    Image.fromarray(gradient, mode="L").convert("RGB").save(buffer, format=fmt)
    return buffer.getvalue()


PNG, JPEG = _encoded("PNG"), _encoded("JPEG")


def png_header(width: int, height: int) -> bytes:
    """A PNG that declares width x height pixels (8-bit grey) but holds only a few bytes of data."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\0" * 64))
        + chunk(b"IEND", b"")
    )


def jpeg_with_size(width: int, height: int) -> bytes:
    """The test JPEG with its frame header (SOF0) rewritten to declare width x height."""
    data = bytearray(JPEG)
    sof = data.index(b"\xff\xc0")
    data[sof + 5 : sof + 9] = struct.pack(">HH", height, width)
    return bytes(data)


def _flip(source: bytes, edits: list[tuple[int, int]]) -> bytes:
    data = bytearray(source)
    for position, value in edits:
        data[position % len(data)] = value
    return bytes(data)


def _valid() -> st.SearchStrategy[bytes]:
    return st.sampled_from([PNG, JPEG])


BAD_IMAGE_BYTES = st.one_of(
    st.just(b""),
    st.binary(max_size=1024),
    st.text(max_size=300).map(lambda text: text.encode("utf-8", "surrogatepass")),  # not an image at all
    _valid().flatmap(lambda data: st.integers(0, len(data) - 1).map(lambda n: data[:n])),  # truncated
    st.builds(
        _flip,
        _valid(),
        st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), min_size=1, max_size=12),
    ),
    st.builds(png_header, st.integers(1, 2**31 - 1), st.integers(1, 2**31 - 1)),
    st.builds(jpeg_with_size, st.integers(1, 65535), st.integers(1, 65535)),
)


# ---------------------------------------------------------------------- images
@FUZZ
@given(data=BAD_IMAGE_BYTES, extension=st.sampled_from([".png", ".jpg", ".jpeg", ".tif", ".webp", ".bmp"]))
def test_any_bytes_decode_or_fail_naming_the_file(data: bytes, extension: str) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"scan-ü{extension}"
        path.write_bytes(data)
        try:
            image = load_image(path)
        except ImageReadError as e:
            assert e.path == str(path) and str(path) in str(e) and e.reason
            return
        assert image.mode == "RGB" and image.width * image.height > 0


@pytest.mark.parametrize(
    "data",
    [
        png_header(30_000, 30_000),
        png_header(1, 2**31 - 1),
        png_header(20_001, 20_000),
        jpeg_with_size(65_000, 65_000),
    ],
    ids=["png-30k", "png-tall", "png-just-over", "jpeg-65k"],
)
def test_decompression_bombs_are_refused_before_decoding(tmp_path, data):
    path = tmp_path / "bomb.png"
    path.write_bytes(data)
    with pytest.raises(ImageReadError, match="bomb.png") as raised:
        load_image(path)
    assert "decompression bomb" in raised.value.reason.lower().replace(
        "decompressionbomb", "decompression bomb"
    )


def _bad_files() -> dict[str, bytes]:
    return {
        "zero.png": b"",
        "truncated.jpg": JPEG[: len(JPEG) // 2],
        "flipped.png": _flip(PNG, [(40, 0), (41, 255), (60, 7)]),
        "notes.png": b"Findings: no pneumothorax.\n",
        "page.jpeg": b"<html><body>not an image</body></html>",
        "bomb.png": png_header(40_000, 40_000),
    }


def test_ingest_skips_each_bad_image_by_name_and_keeps_stored_records(tmp_path, shared_data, rel_factory):
    good = sorted((shared_data / "vqa-rad" / "images").glob("*.jpg"))[:2]
    first, second = tmp_path / "first", tmp_path / "second"
    for folder in (first, second):
        folder.mkdir()
    shutil.copy(good[0], first / good[0].name)
    shutil.copy(good[1], second / good[1].name)
    bad = _bad_files()
    for name, data in bad.items():
        (second / name).write_bytes(data)
    captions = [{"file_name": name, "caption": f"chest film {name}"} for name in [good[1].name, *bad]]
    (second / "metadata.jsonl").write_text("\n".join(json.dumps(row) for row in captions))
    with rel_factory(rel_settings(tmp_path / "home")) as workspace:
        assert workspace.ingest("folder", first, progress=False).added == 1
        summary = workspace.ingest("folder", second, progress=False)
        failed = {Path(path).name: reason for path, reason in summary.failed}
        assert set(failed) == set(bad), failed
        assert "decompression bomb" in failed["bomb.png"] and "unreadable image" in failed["notes.png"]
        assert summary.added == 1
        collection = workspace.collection()
        assert collection.count() == 2
        assert collection.index("text").count() == collection.vector_count("text") == 1  # the captioned one


# ---------------------------------------------------------------------- DICOM
@pytest.fixture(scope="module")
def dicom_bytes() -> bytes:
    pytest.importorskip("pydicom")
    from pydicom.data import get_testdata_file

    return Path(get_testdata_file("CT_small.dcm")).read_bytes()


@FUZZ
@given(
    cut=st.one_of(st.none(), st.integers(0, 40_000)),
    edits=st.lists(st.tuples(st.integers(128, 40_000), st.integers(0, 255)), max_size=10),
)
def test_malformed_dicom_is_skipped_with_a_reason(dicom_bytes: bytes, cut, edits) -> None:
    from engine.datasets.dicom import load_dicom

    with tempfile.TemporaryDirectory() as folder:
        data = Path(folder) / "data"
        data.mkdir()
        (data / "a-good.dcm").write_bytes(dicom_bytes)
        mutated = _flip(dicom_bytes, edits) if edits else dicom_bytes
        (data / "b-bad.dcm").write_bytes(mutated[:cut] if cut is not None else mutated)
        result = load_dicom(data, out_dir=Path(folder) / "out", salt="fuzz")
        assert 1 <= len(result.records) <= 2
        assert len(result.records) + len(result.skipped) == 2
        for skipped in result.skipped:
            assert skipped.path == "file #1" and skipped.reason


def test_folder_of_only_malformed_dicom_names_the_folder(tmp_path, dicom_bytes):
    from engine.datasets.dicom import load_dicom

    data = tmp_path / "archive"
    data.mkdir()
    (data / "x.dcm").write_bytes(dicom_bytes[:700])
    (data / "y.dcm").write_bytes(b"")
    with pytest.raises(DatasetFormatError, match="archive"):
        load_dicom(data, out_dir=tmp_path / "out", salt="s")


# ---------------------------------------------------------------------- sidecars
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=30),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=12,
)
FILE_NAMES = st.sampled_from(
    ["a.png", "b.png", "sub/c.jpg", "../a.png", "/etc/passwd", "", " ", "A.PNG", "a.png/"]
)
SIDECAR_ROWS = st.fixed_dictionaries(
    {},
    optional={
        "file_name": FILE_NAMES | JSON_VALUES,
        "caption": JSON_VALUES,
        "modality": JSON_VALUES,
        "labels": JSON_VALUES,
        "split": JSON_VALUES,
        "body_part": JSON_VALUES,
    },
)
JSONL_TEXT = st.lists(
    st.one_of(SIDECAR_ROWS.map(json.dumps), JSON_VALUES.map(json.dumps), st.text(max_size=60)), max_size=6
).map("\n".join)
CSV_TEXT = st.lists(
    st.lists(st.one_of(FILE_NAMES, st.text(alphabet=',;"\n\r ab\x00é', max_size=12)), min_size=1, max_size=5),
    min_size=1,
    max_size=6,
).map(lambda rows: "\n".join(",".join(row) for row in rows))


def _image_folder(root: Path) -> Path:
    folder = root / "upl"
    (folder / "sub").mkdir(parents=True)
    (folder / "a.png").write_bytes(PNG)
    (folder / "b.png").write_bytes(PNG)
    (folder / "sub" / "c.jpg").write_bytes(JPEG)
    return folder


def _load_or_fail(folder: Path, sidecar: str) -> None:
    try:
        result = load_folder(folder)
    except DatasetFormatError as e:
        assert sidecar in str(e), str(e)
        return
    assert {r.id for r in result.records} == {"folder:upl/a.png", "folder:upl/b.png", "folder:upl/sub/c.jpg"}
    for record in result.records:
        json.dumps(dict(record.extra))  # what is stored must serialise


@FUZZ
@given(text=JSONL_TEXT)
def test_malformed_jsonl_sidecar_fails_naming_the_file(text: str) -> None:
    with tempfile.TemporaryDirectory() as root:
        folder = _image_folder(Path(root))
        (folder / "metadata.jsonl").write_text(text, encoding="utf-8", errors="surrogatepass")
        _load_or_fail(folder, "metadata.jsonl")


@FUZZ
@given(text=CSV_TEXT)
def test_malformed_csv_sidecar_fails_naming_the_file(text: str) -> None:
    with tempfile.TemporaryDirectory() as root:
        folder = _image_folder(Path(root))
        (folder / "metadata.csv").write_text("file_name,caption,labels\n" + text, encoding="utf-8")
        _load_or_fail(folder, "metadata.csv")


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("metadata.jsonl", "[" * 100_000),  # deep nesting: json.loads raises RecursionError
        ("metadata.jsonl", '{"file_name": "a.png", "caption": ' + "[" * 50_000 + "]" * 50_000 + "}"),
        ("metadata.jsonl", b"\xff\xfe\x00garbage"),
        ("metadata.csv", b"file_name,caption\n\xff\xfe,x\n"),
        ("metadata.csv", "caption\nno file column\n"),
        ("metadata.csv", "file_name\na.png,extra,cells\n"),
        ("metadata.jsonl", '{"file_name": "a.png"}\n{"file_name": "a.png"}'),
    ],
    ids=["deep-array", "deep-value", "bad-utf8-jsonl", "bad-utf8-csv", "no-file-column", "cells", "dup"],
)
def test_sidecar_errors_write_nothing(tmp_path, rel_factory, name, content):
    folder = _image_folder(tmp_path)
    if isinstance(content, bytes):
        (folder / name).write_bytes(content)
    else:
        (folder / name).write_text(content)
    with rel_factory(rel_settings(tmp_path / "home")) as workspace:
        workspace.ingest("folder", _image_folder(tmp_path / "clean"), progress=False)
        before = workspace.collection().count()
        with pytest.raises(DatasetFormatError, match=name):
            workspace.ingest("folder", folder, progress=False)
        assert workspace.collection().count() == before == 3


# ---------------------------------------------------------------------- vectors
def test_wrong_vector_dimensions_are_refused_and_nothing_is_lost(tmp_path):
    encoder = register_hash_encoder()
    with Collection.open(tmp_path, "default", create=True) as collection:
        ingest_records(collection, synthetic_reports(10), {"text": encoder}, source="synth", progress=False)
        wrong = {"text": {"synth:99999": np.ones(DIM + 1, dtype=np.float32)}}
        with pytest.raises(CollectionError, match=rf"shape \({DIM + 1},\).*expected \({DIM},\)"):
            collection.add(synthetic_reports(1, start=99999), wrong)
        with pytest.raises(CollectionError, match=rf"\({DIM},\)"):
            collection.add_vectors("text", {"synth:00001": np.ones(3, dtype=np.float32)})
        with pytest.raises(CollectionError, match="synth:00001.*not finite"):
            collection.add_vectors("text", {"synth:00001": np.full(DIM, np.inf, dtype=np.float32)})
        with pytest.raises(CollectionError, match="dim 64"):
            collection.ensure_space("text", ENCODER, DIM * 2)
        with pytest.raises(DimensionMismatchError, match=f"vector dim {DIM + 1} != index dim {DIM}"):
            collection.index("text").search(np.ones((1, DIM + 1), dtype=np.float32), k=3)
        with pytest.raises(DimensionMismatchError):
            collection.index("text").add(["x"], np.ones((1, 5), dtype=np.float32))
        assert collection.count() == 10 and collection.index("text").count() == 10


class _OtherDimEncoder(HashEncoder):
    dim = DIM * 2

    def encode_texts(self, texts):
        return np.ones((len(texts), self.dim), dtype=np.float32) / np.sqrt(self.dim)


class _NanEncoder(HashEncoder):
    def encode_texts(self, texts):
        return np.full((len(texts), DIM), np.nan, dtype=np.float32)


def test_ingest_with_a_mismatched_or_broken_encoder_stores_nothing(tmp_path):
    encoder = register_hash_encoder()
    with Collection.open(tmp_path, "default", create=True) as collection:
        ingest_records(collection, synthetic_reports(10), {"text": encoder}, source="synth", progress=False)
        more = synthetic_reports(5, start=10)
        with pytest.raises(CollectionError, match="dim"):
            ingest_records(collection, more, {"text": _OtherDimEncoder()}, source="synth", progress=False)
        with pytest.raises(CollectionError, match="not finite"):
            ingest_records(collection, more, {"text": _NanEncoder()}, source="synth", progress=False)
        assert collection.count() == 10
        assert collection.index("text").count() == 10  # the index still opens and agrees
    with Collection.open(tmp_path, "default") as reopened:
        assert reopened.index("text").count() == reopened.count() == 10


# ---------------------------------------------------------------------- filters
FILTER_TEXT = st.one_of(
    st.text(max_size=40),
    st.text(alphabet="=<>.,!~ modality_body CT MR 0123456789-e", max_size=30),
    st.sampled_from(
        ["modality=", "=CT", "age>=", "age=1..", "age=..", "age>=1e999", "age=nan", "a b=c", "x=1,,"]
    ),
)


@FUZZ
@given(expressions=st.lists(FILTER_TEXT, min_size=1, max_size=3))
def test_filter_syntax_parses_or_raises_filter_error(expressions: list[str]) -> None:
    try:
        parsed = parse_filters(expressions)
    except FilterError as e:
        assert str(e)
        return
    assert parsed is None or isinstance(parsed, Filter)


@FUZZ
@given(spec=st.dictionaries(st.text(max_size=12), JSON_VALUES, max_size=3))
def test_filter_dicts_build_or_raise_filter_error(spec) -> None:
    try:
        Filter.from_dict(spec)
    except FilterError as e:
        assert str(e)


# ---------------------------------------------------------------------- API: queries
ODD_TEXT = st.one_of(
    st.text(max_size=200),  # any code point, lone surrogates included
    st.text(alphabet=st.sampled_from("\u0000\u200b\u202e\ufeff\U0001f600\u0301 é漢字\t\n"), max_size=50),
    st.integers(MAX_QUERY_CHARS - 2, MAX_QUERY_CHARS + 5000).map(lambda n: "ab " * (n // 3)),
)


def _json(body) -> dict:
    # ASCII escapes (json.dumps default) let lone surrogates through, as a non-Python client may send them
    return {"content": json.dumps(body).encode(), "headers": {"content-type": "application/json", **AUTH}}


@FUZZ
@given(text=ODD_TEXT, mode=st.sampled_from(["hybrid", "dense", "keyword"]))
def test_odd_and_overlong_queries_answer_or_explain(api_client, text: str, mode: str) -> None:
    response = api_client.post("/search", **_json({"text": text, "mode": mode, "k": 5}))
    assert response.status_code in (200, 400, 422), response.text
    if len(text) > MAX_QUERY_CHARS:
        assert response.status_code == 422 and "text" in json.dumps(response.json()["detail"])
    elif response.status_code != 200:
        assert response.json()["detail"]
    concepts = api_client.get("/concepts", params={"q": text[:500]})
    assert concepts.status_code in (200, 422), concepts.text


@FUZZ
@given(
    expressions=st.lists(FILTER_TEXT, min_size=1, max_size=3), text=st.sampled_from(["chest", "", "brain"])
)
def test_bad_filters_over_http_are_400_or_422(api_client, expressions: list[str], text: str) -> None:
    response = api_client.post("/search", **_json({"text": text or "lung", "filters": expressions}))
    assert response.status_code in (200, 400, 422), response.text
    if response.status_code == 400:
        assert response.json()["detail"] and response.json()["error"] in ("FilterError", "QueryError")
    listed = api_client.get("/collections/default/records", params={"filter": expressions})
    assert listed.status_code in (200, 400, 422), listed.text


@FUZZ
@given(data=BAD_IMAGE_BYTES)
def test_bad_query_images_are_400_naming_the_upload(api_client, data: bytes) -> None:
    response = api_client.post("/search", files={"image": ("probe-ü.png", data, "image/png")})
    assert response.status_code in (200, 400, 413), response.text
    if response.status_code == 400:
        assert "probe-ü.png" in response.json()["detail"]


def test_deeply_nested_json_bodies_are_client_errors(api_client):
    nested = b"[" * 50_000 + b"]" * 50_000
    for path in ("/search", "/ingest"):
        response = api_client.post(path, content=nested, headers={"content-type": "application/json", **AUTH})
        assert 400 <= response.status_code < 500, (path, response.status_code, response.text[:200])


def _stored(home: Path) -> tuple[int, int, int]:
    with sqlite3.connect(home / "collections" / "default" / "records.sqlite") as db:
        records = db.execute("SELECT COUNT(*) FROM records").fetchone()[0]
        vectors = db.execute("SELECT COUNT(*) FROM vectors").fetchone()[0]
        changes = db.execute("SELECT COUNT(*) FROM changes").fetchone()[0]
    return records, vectors, changes


@pytest.fixture(scope="module", autouse=True)
def stored_before(rel_home: Path) -> tuple[int, int, int]:
    """What the shared home holds before this module's API fuzzing (which only reads)."""
    return _stored(rel_home)


def test_nothing_stored_was_lost(api_client, rel_home, stored_before):
    from tests.reliability.conftest import IU_REPORTS, VQA_IMAGES

    assert stored_before[0] == VQA_IMAGES + IU_REPORTS and _stored(rel_home) == stored_before
    stats = api_client.get("/collections/default").json()
    assert stats["records"] == stored_before[0] and sum(stats["vectors"].values()) == stored_before[1]


def test_index_errors_are_engine_errors():
    assert issubclass(DimensionMismatchError, IndexerError) and issubclass(FilterError, IndexerError)
