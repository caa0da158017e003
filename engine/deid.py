"""De-identification of DICOM datasets (DICOM PS3.15 Annex E, Basic Application Level Confidentiality Profile).

`deidentify(ds, salt=..., date_shift_days=...)` returns a de-identified copy of a pydicom `Dataset`. The
actions follow the Basic Profile (Table E.1-1) for the attributes listed below, plus three of its options:

- **Remove (X)**: addresses, telephone numbers, other patient ids / names, institution and department
  names, station name, device serial number, physician and operator names, comments, patient history,
  age, size, weight, accession-related sequences, referenced study / patient sequences (`_REMOVE`).
- **Empty (Z)**: PatientName, PatientBirthDate, PatientBirthTime, PatientSex, ReferringPhysicianName,
  AccessionNumber, StudyID, ContentCreatorName (`_EMPTY`). Every other element of VR PN is emptied too.
- **Replace (D)**: PatientID becomes a keyed pseudonym ``"anon-<12 hex>"`` (same patient -> same value).
- **UIDs (U)**: every UI value that is not a registered DICOM UID (SOP classes, transfer syntaxes: kept) is
  re-mapped to ``"2.25.<128-bit int>"`` by HMAC-SHA256 under the salt, so the same input UID always gives
  the same output under one salt (references between files stay consistent) and a different one under another.
- **Private tags**: all removed; overlay (60xx) and curve (50xx) groups removed.
- **Retain Longitudinal Temporal Information with Modified Dates** option: every DA and DT value is shifted
  by a per-patient number of days derived from the salt and the original patient id (``date_shift_days``
  overrides it with one fixed shift). Intervals within a patient are kept; times (TM) are kept.
- **Clean Descriptors** option: StudyDescription, SeriesDescription and ProtocolName are kept only when
  `clean_descriptor` accepts them: at most 64 characters, no run of 4 or more digits (dates, ids, phone
  numbers), no "@", and no word (3+ characters) of the dataset's own identifying values (patient name and
  id, physician, institution and address texts). Otherwise they are removed.

The result carries PatientIdentityRemoved = "YES", DeidentificationMethod and the matching
DeidentificationMethodCodeSequence (DCM 113100, 113107, 113105). BurnedInAnnotation is not acted on
here: pixels are never altered, so callers must skip images whose BurnedInAnnotation is "YES".
"""

from __future__ import annotations

import copy
import datetime as dt
import hashlib
import hmac
import logging
import re
import warnings
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pydicom.dataelem import DataElement
    from pydicom.dataset import Dataset

logger = logging.getLogger(__name__)

MAX_SHIFT_DAYS = 3650
"""Derived date shifts are between -MAX_SHIFT_DAYS and -1 days (dates move into the past)."""

_REMOVE: frozenset[str] = frozenset(
    {
        "PatientAddress",
        "PatientTelephoneNumbers",
        "PatientTelecomInformation",
        "OtherPatientIDs",
        "OtherPatientIDsSequence",
        "OtherPatientNames",
        "PatientBirthName",
        "PatientMotherBirthName",
        "PatientAge",
        "PatientSize",
        "PatientWeight",
        "MilitaryRank",
        "BranchOfService",
        "EthnicGroup",
        "Occupation",
        "PatientReligiousPreference",
        "AdditionalPatientHistory",
        "PatientComments",
        "MedicalRecordLocator",
        "MedicalAlerts",
        "Allergies",
        "PregnancyStatus",
        "LastMenstrualDate",
        "CountryOfResidence",
        "RegionOfResidence",
        "InstitutionName",
        "InstitutionAddress",
        "InstitutionCodeSequence",
        "InstitutionalDepartmentName",
        "StationName",
        "DeviceSerialNumber",
        "PerformingPhysicianName",
        "PerformingPhysicianIdentificationSequence",
        "NameOfPhysiciansReadingStudy",
        "PhysiciansOfRecord",
        "PhysiciansOfRecordIdentificationSequence",
        "ReferringPhysicianAddress",
        "ReferringPhysicianTelephoneNumbers",
        "ReferringPhysicianIdentificationSequence",
        "RequestingPhysician",
        "OperatorsName",
        "OperatorIdentificationSequence",
        "ImageComments",
        "StudyComments",
        "InterpretationText",
        "RequestAttributesSequence",
        "ReferencedStudySequence",
        "ReferencedPatientSequence",
        "ReferencedPerformedProcedureStepSequence",
        "PerformedProcedureStepID",
        "PerformedProcedureStepDescription",
        "RequestedProcedureDescription",
        "RequestedProcedureID",
        "ScheduledProcedureStepDescription",
        "AdmissionID",
        "AdmittingDiagnosesDescription",
        "IssuerOfPatientID",
        "DerivationDescription",
        "TextString",
        "ContentSequence",
        "PatientInsurancePlanCodeSequence",
        "ResponsibleOrganization",
        "ResponsiblePerson",
    }
)
_EMPTY: frozenset[str] = frozenset(
    {
        "PatientName",
        "PatientBirthDate",
        "PatientBirthTime",
        "PatientSex",
        "ReferringPhysicianName",
        "AccessionNumber",
        "StudyID",
        "ContentCreatorName",
    }
)
DESCRIPTORS: frozenset[str] = frozenset({"StudyDescription", "SeriesDescription", "ProtocolName"})
_KEEP_UID_KEYWORDS: frozenset[str] = frozenset({"TransferSyntaxUID", "ImplementationClassUID"})
_METHOD: tuple[str, ...] = (  # LO values: at most 64 characters each
    "DICOM PS3.15 Basic Application Level Confidentiality Profile",
    "Retain Longitudinal Temporal Information Modified Dates",
    "Clean Descriptors (medsearch rule)",
)
_METHOD_CODES: tuple[tuple[str, str], ...] = (
    ("113100", "Basic Application Confidentiality Profile"),
    ("113107", "Retain Longitudinal Temporal Information Modified Dates Option"),
    ("113105", "Clean Descriptors Option"),
)
_DIGIT_RUN = re.compile(r"\d{4,}")
_WORD = re.compile(r"[^\W_]{3,}", re.UNICODE)


def keyed_hash(salt: str | bytes, text: str) -> bytes:
    """HMAC-SHA256 of `text` under `salt` (the one keyed hash of de-identification)."""
    key = salt.encode("utf-8") if isinstance(salt, str) else salt
    return hmac.new(key, text.encode("utf-8"), hashlib.sha256).digest()


def remap_uid(uid: str, salt: str | bytes) -> str:
    """A ``2.25.<int>`` UID derived from `uid` by a keyed hash: same input and salt, same output."""
    digest = keyed_hash(salt, f"uid:{uid.strip()}")
    return f"2.25.{int.from_bytes(digest[:16], 'big')}"


def patient_key(ds: Dataset) -> str:
    """The original patient identity used to derive per-patient values (id, else name and birth date)."""
    patient_id = str(ds.get("PatientID", "") or "").strip()
    if patient_id:
        return f"id:{patient_id}"
    return f"name:{str(ds.get('PatientName', '') or '').strip()}|{ds.get('PatientBirthDate', '') or ''}"


def patient_date_shift(ds: Dataset, salt: str | bytes) -> int:
    """Days (between -MAX_SHIFT_DAYS and -1) that every date of this patient is shifted by."""
    digest = keyed_hash(salt, f"date-shift:{patient_key(ds)}")
    return -(1 + int.from_bytes(digest[:8], "big") % MAX_SHIFT_DAYS)


def pseudonym(ds: Dataset, salt: str | bytes) -> str:
    """The replacement PatientID: ``"anon-<12 hex>"``, the same for every file of one patient."""
    return "anon-" + keyed_hash(salt, f"patient:{patient_key(ds)}").hex()[:12]


def shift_date(value: str, days: int) -> str:
    """A DICOM DA value ("YYYYMMDD") moved by `days`; "" when it is not a valid date (removed, not kept)."""
    text = value.strip()
    try:
        date = dt.datetime.strptime(text[:8], "%Y%m%d").date()
    except ValueError:
        return ""
    return (date + dt.timedelta(days=days)).strftime("%Y%m%d")


def shift_datetime(value: str, days: int) -> str:
    """A DICOM DT value with its date part moved by `days` (time and offset kept); "" when invalid."""
    text = value.strip()
    if len(text) < 8:
        return ""
    shifted = shift_date(text[:8], days)
    return shifted + text[8:] if shifted else ""


def identifying_words(ds: Dataset) -> set[str]:
    """Lower-case words (3+ characters) of the dataset's identifying values, walked through sequences."""
    words: set[str] = set()

    def collect(_: Dataset, elem: DataElement) -> None:
        keyword = elem.keyword or ""
        if elem.VR == "PN" or keyword in _REMOVE or keyword in _EMPTY or keyword == "PatientID":
            if elem.VR == "SQ" or elem.value is None:
                return
            values = elem.value if elem.VM > 1 else [elem.value]
            for value in values:
                words.update(word.lower() for word in _WORD.findall(str(value).replace("^", " ")))

    ds.walk(collect)
    return words


def clean_descriptor(text: str | None, identifying: Iterable[str]) -> str | None:
    """`text` stripped if it passes the Clean Descriptors rule (module docstring), else None."""
    if text is None:
        return None
    value = str(text).strip()
    if not value or len(value) > 64 or "@" in value or _DIGIT_RUN.search(value):
        return None
    banned = set(identifying)
    if any(word.lower() in banned for word in _WORD.findall(value)):
        return None
    return value


@contextmanager
def quiet_pydicom() -> Iterator[None]:
    """Silence pydicom's value validation, warnings and log lines, which quote tag values (PHI).

    Sets pydicom's reading and writing validation modes to IGNORE for the duration (process-wide settings:
    restored on exit) and suppresses warnings.
    """
    from pydicom import config

    settings = config.settings
    reading, writing = settings.reading_validation_mode, settings.writing_validation_mode
    settings.reading_validation_mode = config.IGNORE
    settings.writing_validation_mode = config.IGNORE
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        settings.reading_validation_mode = reading
        settings.writing_validation_mode = writing


def _is_registered(uid: str) -> bool:
    from pydicom.uid import UID_dictionary

    return uid in UID_dictionary


def deidentify(
    ds: Dataset,
    *,
    salt: str | bytes,
    date_shift_days: int | None = None,
    in_place: bool = False,
) -> Dataset:
    """De-identify a DICOM dataset per the Basic Application Level Confidentiality Profile (module docstring).

    Args:
        ds: the dataset as read by pydicom (file meta included when present).
        salt: the secret key of every keyed hash (UIDs, date shift, pseudonym). Keep it secret and stable:
            the same salt maps the same UIDs to the same values across runs.
        date_shift_days: one fixed shift for every date; None derives a per-patient shift from the salt.
        in_place: modify `ds` itself instead of a deep copy.

    Returns:
        The de-identified dataset (pixel data untouched).
    """
    if not salt:
        raise ValueError("deidentify: salt must be a non-empty secret")
    with quiet_pydicom():
        return _deidentify(ds, salt=salt, date_shift_days=date_shift_days, in_place=in_place)


def _deidentify(ds: Dataset, *, salt: str | bytes, date_shift_days: int | None, in_place: bool) -> Dataset:
    out = ds if in_place else copy.deepcopy(ds)
    identifying = identifying_words(out)
    shift = date_shift_days if date_shift_days is not None else patient_date_shift(out, salt)
    new_patient_id = pseudonym(out, salt)
    out.remove_private_tags()

    def action(dataset: Dataset, elem: DataElement) -> None:
        keyword = elem.keyword or ""
        group = elem.tag.group
        if 0x5000 <= group <= 0x50FF or 0x6000 <= group <= 0x60FF or keyword in _REMOVE:
            del dataset[elem.tag]
        elif keyword in _EMPTY or elem.VR == "PN":
            elem.value = None
        elif keyword in DESCRIPTORS:
            cleaned = clean_descriptor(elem.value, identifying)
            if cleaned is None:
                del dataset[elem.tag]
            else:
                elem.value = cleaned
        elif elem.VR == "UI" and elem.value:
            elem.value = _map_uids(elem.value, keyword, salt)
        elif elem.VR == "DA" and elem.value:
            elem.value = _map_strings(elem.value, lambda value: shift_date(value, shift))
        elif elem.VR == "DT" and elem.value:
            elem.value = _map_strings(elem.value, lambda value: shift_datetime(value, shift))

    out.walk(action)
    file_meta = getattr(out, "file_meta", None)
    if file_meta is not None:
        file_meta.walk(action)
    out.PatientID = new_patient_id
    out.PatientIdentityRemoved = "YES"
    out.DeidentificationMethod = list(_METHOD)
    out.DeidentificationMethodCodeSequence = _method_codes()
    out.LongitudinalTemporalInformationModified = "MODIFIED"
    return out


def _map_uids(value: object, keyword: str, salt: str | bytes) -> object:
    if keyword in _KEEP_UID_KEYWORDS or keyword.endswith("ClassUID"):
        return value

    def one(uid: str) -> str:
        return uid if _is_registered(uid) else remap_uid(uid, salt)

    if isinstance(value, str):
        return one(value)
    return [one(str(uid)) for uid in value]  # type: ignore[attr-defined]


def _map_strings(value: object, convert: object) -> object:
    if isinstance(value, str):
        return convert(value)  # type: ignore[operator]
    return [convert(str(item)) for item in value]  # type: ignore[attr-defined, operator]


def _method_codes() -> list[Dataset]:
    from pydicom.dataset import Dataset

    codes = []
    for value, meaning in _METHOD_CODES:
        item = Dataset()
        item.CodeValue = value
        item.CodingSchemeDesignator = "DCM"
        item.CodeMeaning = meaning
        codes.append(item)
    return codes
