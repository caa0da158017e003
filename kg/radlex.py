"""RadLex term-tree loader (``label,RID,parent RID`` CSV without header, as in the shared ``Radlex.csv``).

That reduction of RadLex has no synonyms and no definitions, only the tree. The semantic type of a
term comes from the branch it sits in: the nearest ancestor listed in ``BRANCH_TYPES`` decides
(anatomical entity -> anatomy, clinical finding -> finding, imaging observation ->
imaging_observation, property and RadLex descriptor -> qualifier, ...). A few imaging-observation
sub-branches are descriptors rather than things one finds ("margin", "lesion characteristic",
"enhancement pattern") and are typed as qualifiers. Qualifiers are not linkable, so words such as
"left", "normal" or "size" never become mentions. Terms whose chain of parents breaks (44 parent ids
are missing from the file) are typed ``other``.

RadLex is (c) RSNA, RadLex License 2.0: keep the notice when redistributing the data.
"""

from __future__ import annotations

import csv
import logging
import re
from pathlib import Path

from kg.concepts import (
    ANATOMY,
    DEVICE,
    FINDING,
    IMAGING_OBSERVATION,
    IS_A,
    MODALITY,
    OTHER,
    PROCEDURE,
    QUALIFIER,
    SUBSTANCE,
    Concept,
    Relation,
    SourceData,
)
from kg.errors import OntologyFormatError

logger = logging.getLogger(__name__)

ROOT = "RID1"
_RID_RE = re.compile(r"^RID\d+$")

# RadLex id -> semantic type of its subtree (the nearest listed ancestor wins).
BRANCH_TYPES: dict[str, str] = {
    "RID3": ANATOMY,  # anatomical entity
    "RID34785": FINDING,  # clinical finding
    "RID5": IMAGING_OBSERVATION,  # imaging observation
    "RID35977": QUALIFIER,  # property
    "RID6": QUALIFIER,  # RadLex descriptor
    "RID1559": PROCEDURE,  # procedure
    "RID7467": OTHER,  # procedure step
    "RID10311": MODALITY,  # imaging modality
    "RID7479": SUBSTANCE,  # non-anatomical substance
    "RID34861": DEVICE,  # object (medical object, foreign body)
    "RID39128": OTHER,  # process
    "RID13158": OTHER,  # report component
    "RID28487": OTHER,  # report
    "RID49573": QUALIFIER,  # temporal entity
    "RID28639": OTHER,  # RadLex non-anatomical set
    # Imaging-observation sub-branches that describe rather than name a finding.
    "RID43356": QUALIFIER,  # lesion characteristic
    "RID5972": QUALIFIER,  # margin
    "RID6058": QUALIFIER,  # enhancement pattern
    "RID34346": QUALIFIER,  # echotexture
    "RID49701": QUALIFIER,  # signal-related observation
    "RID36026": QUALIFIER,  # assessment (Lung-RADS, LI-RADS categories)
    "RID45721": QUALIFIER,  # density-related entity
    "RID34265": QUALIFIER,  # asymmetry
}


def _read_rows(path: Path) -> list[tuple[str, str, str]]:
    """Rows of the CSV as (label, rid, parent rid), validated."""
    rows: list[tuple[str, str, str]] = []
    with path.open(encoding="utf-8-sig", newline="") as handle:
        for number, row in enumerate(csv.reader(handle), start=1):
            if not row:
                continue
            if len(row) != 3:
                raise OntologyFormatError(
                    f"{path}:{number}: expected 3 columns label,RID,parent, got {len(row)}"
                )
            label, rid, parent = (cell.strip() for cell in row)
            if not _RID_RE.match(rid) or not _RID_RE.match(parent):
                raise OntologyFormatError(
                    f"{path}:{number}: malformed RadLex id in {row!r} (expected RID<digits>)"
                )
            if not label:
                raise OntologyFormatError(f"{path}:{number}: empty label for {rid}")
            rows.append((label, rid, parent))
    return rows


def _semantic_types(parents: dict[str, str]) -> dict[str, str]:
    """Semantic type of every RID from the nearest ancestor in ``BRANCH_TYPES`` (memoised walk)."""
    types: dict[str, str] = {}
    for rid in parents:
        chain: list[str] = []
        node, found = rid, OTHER
        while node not in types:
            if node in BRANCH_TYPES:
                found = BRANCH_TYPES[node]
                break
            if node not in parents or node == ROOT or len(chain) > len(parents):
                break
            chain.append(node)
            node = parents[node]
        else:
            found = types[node]
        for member in chain:
            types[member] = found
        types.setdefault(rid, found)
    return types


def load_radlex(path: Path) -> SourceData:
    """Load the RadLex tree.

    Args:
        path: ``Radlex.csv`` (``label,RID,parent RID`` rows, no header).

    Returns:
        SourceData with one concept per RID (semantic type from its branch) and ``is_a`` edges to the
        parent when the parent is in the file.

    Raises:
        OntologyFormatError: A row without 3 columns, a malformed RID, an empty label or a duplicate RID
            (naming file and line).
    """
    path = Path(path)
    rows = _read_rows(path)
    parents: dict[str, str] = {}
    for number, (_, rid, parent) in enumerate(rows, start=1):
        if rid in parents:
            raise OntologyFormatError(f"{path}:{number}: duplicate RadLex id {rid}")
        parents[rid] = parent
    types = _semantic_types(parents)
    data = SourceData(name="radlex", location=str(path))
    for label, rid, parent in rows:
        # Branch roots ("clinical finding", "procedure", "object") are headings, not things to link.
        semantic_type = OTHER if parent == ROOT else types[rid]
        data.concepts[rid] = Concept(id=rid, name=label, semantic_type=semantic_type, sources=("radlex",))
        if parent in parents:
            data.relations.append(Relation(rid, IS_A, parent, "radlex"))
    logger.info("read %d RadLex terms, %d is_a edges from %s", len(data.concepts), len(data.relations), path)
    return data
