"""Normalisation of source vocabularies: modality, body part, plane, answer type and split names.

Every function takes the raw string a source holds (or None) and returns the project's value, or None
when the value is unknown or names no single modality / region / plane. Unknown values are logged at
DEBUG level so a new dataset's vocabulary can be audited.

Modalities (DICOM-like codes): CT, MR, XR, US, PET, NM, MG, FL, ANGIO. A scanner decides the code, so
CT angiography is CT and MR angiography, spectroscopy or any pulse sequence (FLAIR, T1, T2, DWI, ADC,
STIR, SWI...) is MR; ANGIO is reserved for catheter / digital subtraction angiography. PET-CT is PET,
CT colonography ("Virtual Colonoscopy") is CT. "Drawing" is no modality.

Body parts (lower case): head, neck, chest, abdomen, pelvis, spine, upper limb, lower limb, breast.
Exact source values are mapped first (VQA-RAD HEAD/CHEST/ABD, SLAKE locations, MedPix Location and
Location Category), then keywords. MedPix organ-system values that name no region (Musculoskeletal,
Vascular, Generalized, Endocrine, Hematopoietic, Pathology, "Nerve, peripheral", "Spine and Muscles",
"Bethesda, MD", "Left Blank") map to None on purpose; MedPix loaders then fall back to Location
Category. Genitourinary / "Reproductive and Urinary System" maps to abdomen (mostly kidney imaging).

Planes (lower case): axial (also "transverse"), coronal, sagittal, oblique, frontal (also AP, PA),
lateral, 3d. Montage, "Other View", NOS, photographs, gross pathology and drawings map to None.
"""

from __future__ import annotations

import logging
import re

logger = logging.getLogger(__name__)

MODALITIES: tuple[str, ...] = ("CT", "MR", "XR", "US", "PET", "NM", "MG", "FL", "ANGIO")
BODY_PARTS: tuple[str, ...] = (
    "head",
    "neck",
    "chest",
    "abdomen",
    "pelvis",
    "spine",
    "upper limb",
    "lower limb",
    "breast",
)
PLANES: tuple[str, ...] = ("axial", "coronal", "sagittal", "oblique", "frontal", "lateral", "3d")

# Checked in order on lower-cased text: PET before CT ("PET-CT"), CT/MR before ANGIO ("CT angiography").
_MODALITY_RULES: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("PET", re.compile(r"\bpet\b|positron")),
    ("NM", re.compile(r"\bnm\b|nuclear|scintigra|\bspect\b|bone scan")),
    ("MG", re.compile(r"mammo|\bmg\b")),
    ("US", re.compile(r"ultrasound|ultrasonograph|sonograph|sonogram|doppler|\bechocardio|\bus\b")),
    (
        "MR",
        re.compile(
            r"\bmr[iasv]?\b|magnetic resonance|\bflair\b|\bt1|\bt2|\bdwi\b|\badc\b|diffusion|\bstir\b"
            r"|fiesta|proton density|\bswi\b|\bpdw\b"
        ),
    ),
    ("CT", re.compile(r"\bcta?\b|computed tomograph|\bcat scan|virtual colonoscopy|colonograph")),
    ("FL", re.compile(r"fluoro|\bfl\b|\brf\b|barium|esophagram|swallow study")),
    ("ANGIO", re.compile(r"angiogra|\bangio\b|\bdsa\b|\bxa\b")),
    ("XR", re.compile(r"x[- ]?ray|radiograph|plain film|\bfilm\b|\bcxr\b|\bkub\b|\bcr\b|\bdx\b|\bxr\b")),
)

# Exact values (after _key) from the shared sources; None marks a value known to name no region.
_BODY_PART_VALUES: dict[str, str | None] = {
    # VQA-RAD image_organ
    "abd": "abdomen",
    # SLAKE location
    "lung": "chest",
    "brain tissue": "head",
    "brain face": "head",
    "pelvic cavity": "pelvis",
    "chest lung": "chest",
    "chest heart": "chest",
    "chest mediastinal": "chest",
    # MedPix Location
    "brain and neuro": "head",
    "head and neck": "head",
    "eye and orbit": "head",
    "ophthalmology": "head",
    "nerve central": "head",
    "dental oral or tooth": "head",
    "chest pulmonary": "chest",
    "cardiovascular": "chest",
    "cardiopulmonary": "chest",
    "gastrointestinal": "abdomen",
    "genitourinary": "abdomen",
    "breast and mammography": "breast",
    "musculoskeletal": None,
    "vascular": None,
    "generalized": None,
    "endocrine": None,
    "hematopoietic": None,
    "pathology": None,
    "nerve peripheral": None,
    "bethesda md": None,
    "left blank": None,
    # MedPix Location Category
    "thorax": "chest",
    "reproductive and urinary system": "abdomen",
    "spine and muscles": None,
}

# Keyword fall-back for other sources, checked in order (spine before neck: "cervical spine").
_BODY_PART_RULES: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("spine", re.compile(r"spine|spinal|vertebra|lumbar|sacr|\bc spine|\bl spine|\bt spine")),
    ("breast", re.compile(r"breast|mammo")),
    (
        "head",
        re.compile(r"head|brain|skull|cranial|\bface|facial|orbit|\beye|sinus|dental|tooth|teeth|\bjaw"),
    ),
    ("neck", re.compile(r"neck|thyroid|larynx|pharynx|cervical")),
    ("chest", re.compile(r"chest|thora|lung|pulmon|heart|cardi|mediastin|\brib")),
    ("pelvis", re.compile(r"pelvi|bladder|prostat|\buter|\bovar|\brect|\bhip")),
    (
        "abdomen",
        re.compile(r"abdom|\babd\b|liver|hepat|kidney|renal|bowel|colon|pancrea|splee|stomach|gastro"),
    ),
    (
        "upper limb",
        re.compile(r"upper (limb|extremity)|\barm\b|shoulder|elbow|wrist|\bhand|finger|humer|forearm"),
    ),
    (
        "lower limb",
        re.compile(r"lower (limb|extremity)|\bleg\b|knee|ankle|foot|feet|\btoe|femur|tibia|thigh"),
    ),
)

_PLANE_RULES: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("axial", re.compile(r"axial|transverse|\btransaxial")),
    ("coronal", re.compile(r"coronal")),
    ("sagittal", re.compile(r"sagittal")),
    ("oblique", re.compile(r"oblique")),
    ("3d", re.compile(r"\b3d\b|three dimension|reconstruction")),
    ("frontal", re.compile(r"frontal|\bap\b|\bpa\b|posteroanterior|anteroposterior")),
    ("lateral", re.compile(r"lateral")),
)

_SPLIT_NAMES: dict[str, str] = {
    "train": "train",
    "training": "train",
    "val": "validation",
    "valid": "validation",
    "validate": "validation",
    "validation": "validation",
    "dev": "validation",
    "test": "test",
}


def _key(value: str) -> str:
    """Lower-case, every run of non-alphanumerics replaced by one space, stripped."""
    return re.sub(r"[^0-9a-z]+", " ", value.lower()).strip()


def _first_match(text: str, rules: tuple[tuple[str, re.Pattern[str]], ...]) -> str | None:
    return next((name for name, pattern in rules if pattern.search(text)), None)


def find_modalities(text: str | None) -> list[str]:
    """Every modality a free text mentions, in rule order (e.g. a question "Is this a CT or an MRI?")."""
    if not text:
        return []
    lowered = text.lower()
    return [name for name, pattern in _MODALITY_RULES if pattern.search(lowered)]


def normalise_modality(value: str | None) -> str | None:
    """Map a source modality string to one of `MODALITIES`, or None.

    Args:
        value: e.g. "CT - noncontrast", "MRI", "MR - T2 weighted", "X-Ray", "Plain film", "CR", "DX".

    Returns:
        "CT", "MR", "XR", "US", "PET", "NM", "MG", "FL", "ANGIO", or None when unknown or empty.
    """
    if value is None or not value.strip():
        return None
    result = _first_match(value.lower(), _MODALITY_RULES)
    if result is None:
        logger.debug("unknown modality %r", value)
    return result


def normalise_body_part(value: str | None) -> str | None:
    """Map a source region / location string to one of `BODY_PARTS`, or None.

    Args:
        value: e.g. "ABD", "Brain_Tissue", "Pelvic Cavity", "Chest, Pulmonary", "Brain and Neuro".

    Returns:
        A lower-case region such as "head" or "abdomen"; None when empty, unknown, or a known value
        that names an organ system rather than a region (see the module docstring).
    """
    if value is None or not value.strip():
        return None
    key = _key(value)
    if key in BODY_PARTS:
        return key
    if key in _BODY_PART_VALUES:
        return _BODY_PART_VALUES[key]
    result = _first_match(key, _BODY_PART_RULES)
    if result is None:
        logger.debug("unknown body part %r", value)
    return result


def normalise_plane(value: str | None) -> str | None:
    """Map a source plane / projection ("Axial", "Transverse Plane", "PA", "Lateral") to `PLANES`, or None."""
    if value is None or not value.strip():
        return None
    result = _first_match(_key(value), _PLANE_RULES)
    if result is None:
        logger.debug("unknown plane %r", value)
    return result


def normalise_answer_type(value: str | None) -> str | None:
    """ "CLOSED" or "OPEN" from a raw answer type ("CLOSED ", "open"); None for anything else."""
    if value is None:
        return None
    upper = value.strip().upper()
    return upper if upper in ("CLOSED", "OPEN") else None


def split_from_name(name: str) -> str | None:
    """The split a file or list name denotes: "trainset" / "train_en" -> "train", "validate_en" -> "validation".

    Args:
        name: a file stem or list key; a trailing "set" and a "_xx" language suffix are ignored.

    Returns:
        "train", "validation" or "test", or None when the name denotes none of them.
    """
    key = _key(name).split(" ")[0] if name.strip() else ""
    if key.endswith("set") and key[:-3] in _SPLIT_NAMES:
        key = key[:-3]
    return _SPLIT_NAMES.get(key)
