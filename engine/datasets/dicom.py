"""DICOM loader: files or folders of DICOM (recursive) -> de-identified image records and rendered PNGs.

Every file under the path (hidden entries skipped) is read with ``pydicom.dcmread(force=False)``; files
that are not DICOM (no "DICM" preamble) are skipped and counted, malformed DICOM (unreadable, truncated,
pixel data that does not decode) and DICOM without an image (SR, RT plan, DICOMDIR) become
`SkippedRecord`s with a reason, never a crash. Images flagged BurnedInAnnotation = "YES" are skipped
unless ``allow_burned_in=True`` (their pixels may show PHI that no tag rule removes).

Each dataset is de-identified in memory by `engine.deid.deidentify` (Basic Application Level
Confidentiality Profile; see that module) before anything is taken from it, and its pixels are rendered to
8 bits: Modality LUT / RescaleSlope+Intercept, then VOI LUT or WindowCenter/Width (first window), else a
0.5-99.5 percentile window; MONOCHROME1 is inverted; PALETTE COLOR is expanded; RGB / YBR is kept as RGB.
Multi-frame images give their middle frame (``frames="middle"``) or one record per frame
(``frames="all"``). The PNG (no text chunks, so no metadata) is written to `out_dir`, which the caller must
give: the data folder is read only. Re-ingesting with the same salt rewrites the same files.

Records: id ``"dicom:<remapped SOPInstanceUID>"`` (``"/frame-<i>"`` appended with ``frames="all"``), kind
"image", source "dicom", modality from Modality (PT -> PET, CR/DX -> XR, then `normalise_modality`),
body part from BodyPartExamined (else the cleaned study / series description), plane from
ImageOrientationPatient (axis of the slice normal; "oblique" when no axis dominates). extra holds the
shifted study date (ISO), the cleaned series and study descriptions (kept only by the Clean Descriptors
rule of `engine.deid`), the remapped study / series UIDs, the raw Modality code and the frame index and
count. No patient field (name, id, birth date, sex, age) is ever copied.

PHI in logs: file paths can hold patient names in real archives, so no path, tag value or original UID is
logged. Files are named by their index in `dicom_files(path)` (sorted order), which is also what
`SkippedRecord.path` holds (``"file #12"``); `SkippedRecord.id` is ``"dicom:file-<keyed hash of the
relative path>"``. Call `dicom_files(path)[12]` to find the file locally. Exception messages are logged
with quoted text removed.
"""

from __future__ import annotations

import logging
import os
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from engine.datasets.base import LoadResult, SkippedRecord, finish, natural_key
from engine.datasets.record import Record
from engine.datasets.vocab import normalise_body_part, normalise_modality
from engine.deid import (
    DESCRIPTORS,
    clean_descriptor,
    deidentify,
    identifying_words,
    keyed_hash,
    quiet_pydicom,
)
from engine.errors import DatasetFormatError

if TYPE_CHECKING:
    from pydicom.dataset import Dataset

logger = logging.getLogger(__name__)

SOURCE = "dicom"
Frames = Literal["middle", "all"]
_DICOM_MODALITY_CODES: dict[str, str] = {"PT": "PET", "CR": "XR", "DX": "XR", "RG": "XR", "XA": "ANGIO"}
_QUOTED = re.compile(r"'[^']*'|\"[^\"]*\"")


class _Skip(Exception):
    """A file that yields no record, with a reason free of PHI."""


@dataclass(frozen=True)
class _Rendered:
    frame: int
    frames: int
    pixels: np.ndarray  # uint8, (rows, columns) or (rows, columns, 3)


def dicom_files(path: str | Path) -> list[Path]:
    """The files `load_dicom` reads: `path` itself, or every non-hidden file under it, in sorted order.

    Raises:
        DatasetFormatError: the path does not exist.
    """
    root = Path(path).expanduser()
    if root.is_file():
        return [root.resolve()]
    if not root.is_dir():
        raise DatasetFormatError(f"DICOM path {str(root)!r} does not exist")
    found: list[Path] = []
    for folder, directories, files in os.walk(root):
        directories[:] = [name for name in directories if not name.startswith(".")]
        found.extend(Path(folder) / name for name in files if not name.startswith("."))
    return sorted((item.resolve() for item in found), key=lambda item: natural_key(item.as_posix()))


def load_dicom(
    path: str | Path,
    *,
    out_dir: str | Path | None = None,
    frames: Frames = "middle",
    date_shift_days: int | None = None,
    salt: str | bytes | None = None,
    allow_burned_in: bool = False,
) -> LoadResult:
    """Load DICOM files (a file or a folder, recursive) as de-identified image records.

    Args:
        path: a DICOM file or a folder (read only; nothing is written there).
        out_dir: folder for the rendered PNGs (created if missing). Required.
        frames: "middle" (one record per file) or "all" (one record per frame).
        date_shift_days: one fixed date shift; None derives a per-patient shift from the salt.
        salt: the secret of the keyed hashes (UIDs, dates). Pass a stable secret: record ids derive
            from it. None uses a random one for this call only (ids then change on every load; warned).
        allow_burned_in: also load images flagged BurnedInAnnotation = "YES".

    Returns:
        Records sorted by id and the skipped files (see the module docstring).

    Raises:
        DatasetFormatError: no `out_dir`, `frames` unknown, the path missing, or no DICOM image under it.
    """
    if out_dir is None:
        raise DatasetFormatError(
            "load_dicom needs out_dir: the folder for the rendered de-identified PNGs (data folders are read only)"
        )
    if frames not in ("middle", "all"):
        raise DatasetFormatError(f"load_dicom: frames must be 'middle' or 'all', got {frames!r}")
    if not salt:
        logger.warning("no salt given: using a random one, so record ids will differ on the next load")
        salt = secrets.token_hex(32)
    root = Path(path).expanduser()
    files = dicom_files(root)
    target = Path(out_dir).expanduser().resolve()
    target.mkdir(parents=True, exist_ok=True)
    base = root.resolve() if root.is_dir() else root.resolve().parent

    records: list[Record] = []
    skipped: list[SkippedRecord] = []
    seen: set[str] = set()
    not_dicom = 0
    for index, file in enumerate(files):
        try:
            with quiet_pydicom():  # for the whole file: pydicom's messages quote tag values
                ds = _read(file)
                if ds is None:
                    not_dicom += 1
                    skipped.append(_skipped(file, base, index, salt, "not a DICOM file (no DICM preamble)"))
                    continue
                new = _load_one(ds, target, frames, date_shift_days, salt, allow_burned_in, seen)
        except _Skip as e:
            skipped.append(_skipped(file, base, index, salt, str(e)))
            logger.debug("file #%d skipped: %s", index, e)
            continue
        records.extend(new)
    if not_dicom:
        logger.info("skipped %d non-DICOM file(s) of %d", not_dicom, len(files))
    if not records:
        raise DatasetFormatError(
            f"no readable DICOM image under {str(root)!r} ({len(files)} file(s), {not_dicom} not DICOM, "
            f"{len(skipped) - not_dicom} skipped)"
        )
    malformed = [item for item in skipped if not item.reason.startswith("not a DICOM")]
    if malformed:
        logger.warning(
            "%s: skipped %d DICOM file(s): %s",
            SOURCE,
            len(malformed),
            "; ".join(f"{item.path}: {item.reason}" for item in malformed[:5]),
        )
    result = finish(SOURCE, records)
    return LoadResult(records=result.records, skipped=tuple(skipped))


def _skipped(file: Path, base: Path, index: int, salt: str | bytes, reason: str) -> SkippedRecord:
    try:
        relative = file.relative_to(base).as_posix()
    except ValueError:
        relative = file.name
    return SkippedRecord(
        id=f"{SOURCE}:file-{keyed_hash(salt, f'path:{relative}').hex()[:16]}",
        path=f"file #{index}",
        reason=reason,
    )


def _safe_message(error: BaseException) -> str:
    message = _QUOTED.sub("'...'", str(error)).strip()
    return f"{type(error).__name__}: {message[:160]}" if message else type(error).__name__


def _read(file: Path) -> Dataset | None:
    """The dataset, or None when the file is not DICOM; _Skip when it is DICOM but unreadable."""
    from pydicom import dcmread
    from pydicom.errors import InvalidDicomError

    try:
        with quiet_pydicom():  # pydicom warnings can quote tag values
            return dcmread(file, force=False)
    except InvalidDicomError:
        return None
    except Exception as e:  # noqa: BLE001 - any parser failure is a malformed file, never a crash
        raise _Skip(f"malformed DICOM ({_safe_message(e)})") from e


def _load_one(
    ds: Dataset,
    out_dir: Path,
    frames: Frames,
    date_shift_days: int | None,
    salt: str | bytes,
    allow_burned_in: bool,
    seen: set[str],
) -> list[Record]:
    if "PixelData" not in ds and "FloatPixelData" not in ds and "DoubleFloatPixelData" not in ds:
        sop_class = getattr(ds.get("SOPClassUID"), "name", None) or "unknown SOP class"
        raise _Skip(f"no image in this DICOM ({sop_class})")
    if str(ds.get("BurnedInAnnotation", "")).strip().upper() == "YES" and not allow_burned_in:
        raise _Skip("BurnedInAnnotation is YES (pixels may show PHI); pass allow_burned_in=True to load")
    if not ds.get("SOPInstanceUID"):
        raise _Skip("no SOPInstanceUID")
    identifying = identifying_words(ds)
    try:
        clean = deidentify(ds, salt=salt, date_shift_days=date_shift_days, in_place=True)
    except Exception as e:  # noqa: BLE001 - a malformed element must not stop the load
        raise _Skip(f"malformed DICOM, de-identification failed ({_safe_message(e)})") from e
    uid = str(clean.SOPInstanceUID)
    if uid in seen:
        raise _Skip("duplicate SOPInstanceUID (same image already loaded)")
    seen.add(uid)
    try:
        rendered = render(clean, frames)
    except _Skip:
        raise
    except Exception as e:  # noqa: BLE001 - undecodable pixel data is a skip, never a crash
        raise _Skip(f"malformed DICOM, pixel data not decodable ({_safe_message(e)})") from e
    fields = _fields(clean, identifying)
    records = []
    for item in rendered:
        suffix = f"/frame-{item.frame}" if frames == "all" and item.frames > 1 else ""
        name = f"{uid}_f{item.frame}.png" if suffix else f"{uid}.png"
        image_path = out_dir / name
        _write_png(item.pixels, image_path)
        extra = dict(fields["extra"], frame=item.frame, frames=item.frames)
        records.append(
            Record(
                id=f"{SOURCE}:{uid}{suffix}",
                kind="image",
                source=SOURCE,
                image_path=str(image_path),
                modality=fields["modality"],
                body_part=fields["body_part"],
                plane=fields["plane"],
                extra=extra,
            )
        )
    return records


def _write_png(pixels: np.ndarray, path: Path) -> None:
    from PIL import Image

    tmp = path.with_name(path.name + ".tmp")
    Image.fromarray(pixels).save(tmp, format="PNG")  # no pnginfo: the PNG carries no text chunks
    os.replace(tmp, path)


def _fields(ds: Dataset, identifying: set[str]) -> dict[str, Any]:
    code = str(ds.get("Modality", "") or "").strip().upper()
    modality = normalise_modality(_DICOM_MODALITY_CODES.get(code, code)) if code else None
    descriptions = {
        keyword: clean_descriptor(ds.get(keyword), identifying)
        for keyword in sorted(DESCRIPTORS)
        if ds.get(keyword)
    }
    body_part = normalise_body_part(str(ds.get("BodyPartExamined", "") or "").strip() or None)
    if body_part is None:
        for text in (descriptions.get("StudyDescription"), descriptions.get("SeriesDescription")):
            body_part = body_part or normalise_body_part(text)
    extra: dict[str, Any] = {}
    study_date = _iso_date(ds.get("StudyDate") or ds.get("SeriesDate") or ds.get("AcquisitionDate"))
    if study_date:
        extra["study_date"] = study_date
    if descriptions.get("SeriesDescription"):
        extra["series_description"] = descriptions["SeriesDescription"]
    if descriptions.get("StudyDescription"):
        extra["study_description"] = descriptions["StudyDescription"]
    for keyword, key in (("StudyInstanceUID", "study_uid"), ("SeriesInstanceUID", "series_uid")):
        if ds.get(keyword):
            extra[key] = str(ds.get(keyword))
    if code:
        extra["modality_code"] = code
    return {"modality": modality, "body_part": body_part, "plane": plane_from_orientation(ds), "extra": extra}


def _iso_date(value: Any) -> str | None:
    text = str(value or "").strip()
    if len(text) < 8 or not text[:8].isdigit():
        return None
    return f"{text[:4]}-{text[4:6]}-{text[6:8]}"


def plane_from_orientation(ds: Dataset) -> str | None:
    """ "axial", "coronal", "sagittal" or "oblique" from ImageOrientationPatient, None when absent or invalid."""
    values = ds.get("ImageOrientationPatient")
    try:
        row, column = np.asarray([float(v) for v in values][:3]), np.asarray([float(v) for v in values][3:6])
    except (TypeError, ValueError):
        return None
    if row.size != 3 or column.size != 3:
        return None
    normal = np.cross(row, column)
    length = float(np.linalg.norm(normal))
    if length == 0.0:
        return None
    normal = np.abs(normal / length)
    axis = int(np.argmax(normal))
    if normal[axis] < 0.8:
        return "oblique"
    return ("sagittal", "coronal", "axial")[axis]


def render(ds: Dataset, frames: Frames = "middle") -> list[_Rendered]:
    """Decode and render the pixel data to 8-bit frames (module docstring: LUTs, windowing, colour)."""
    with quiet_pydicom():
        array = ds.pixel_array
    samples = int(ds.get("SamplesPerPixel", 1) or 1)
    single_ndim = 3 if samples > 1 else 2
    stack = array if array.ndim == single_ndim + 1 else array[np.newaxis]
    if stack.ndim != single_ndim + 1:
        raise _Skip(f"unexpected pixel array shape {array.shape}")
    count = stack.shape[0]
    indices: Sequence[int] = range(count) if frames == "all" else (count // 2,)
    return [_Rendered(frame=i, frames=count, pixels=_to_uint8(stack[i], ds)) for i in indices]


def _to_uint8(frame: np.ndarray, ds: Dataset) -> np.ndarray:
    from pydicom.pixels import apply_color_lut, apply_modality_lut, apply_voi_lut

    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).strip().upper()
    if photometric == "PALETTE COLOR":
        colour = apply_color_lut(frame, ds)  # uint8 or uint16, by the LUT's entry size
        if colour.dtype == np.uint8:
            return np.ascontiguousarray(colour)
        return np.clip(np.rint(colour / 65535.0 * 255.0), 0, 255).astype(np.uint8)
    if frame.ndim == 3:  # RGB (pydicom converts YBR to RGB when decoding)
        if frame.dtype == np.uint8:
            return np.ascontiguousarray(frame)
        bits = int(ds.get("BitsStored", 8) or 8)
        return np.clip(np.rint(frame / (2**bits - 1) * 255.0), 0, 255).astype(np.uint8)
    values = np.asarray(apply_modality_lut(frame, ds), dtype=np.float64)
    if "VOILUTSequence" in ds:
        values = np.asarray(apply_voi_lut(values.astype(np.int64), ds, index=0), dtype=np.float64)
        low, high = float(values.min()), float(values.max())
    elif "WindowCenter" in ds and "WindowWidth" in ds:
        values = np.asarray(apply_voi_lut(values, ds, index=0, prefer_lut=False), dtype=np.float64)
        with np.errstate(all="ignore"):
            probe = apply_voi_lut(np.array([-1e12, 1e12]), ds, index=0, prefer_lut=False)
        low, high = float(probe[0]), float(probe[1])
    else:
        low, high = (float(v) for v in np.percentile(values, (0.5, 99.5)))
    if not np.isfinite(low) or not np.isfinite(high) or high <= low:
        low, high = float(values.min()), float(values.max())
    scaled = (values - low) / (high - low) * 255.0 if high > low else np.zeros_like(values)
    pixels = np.clip(np.rint(scaled), 0, 255).astype(np.uint8)
    if photometric == "MONOCHROME1":
        pixels = 255 - pixels
    return pixels
