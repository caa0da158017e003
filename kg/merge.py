"""Merge concepts of several sources into one concept per meaning.

Rules, applied in this order with a union-find:

1. Shared ids and xrefs: concepts of different sources sharing a UMLS CUI (``UMLS:C...``), a MeSH id
   (``MESH:D...``) or an id (a curated synonym row naming ``RID34539``) become one. An xref that two
   concepts of the *same* source share (the Disease Ontology gives one MeSH heading to several terms)
   is ambiguous for that source and is not used to merge its concepts.
2. Names: concepts of different sources whose normalised preferred names are equal merge, but only
   inside one semantic group (disorders: disease/finding/imaging observation; anatomy; procedures;
   devices; modalities) and only when the name is unique within each source. Qualifiers and values
   never merge by name.
3. A preferred name equal to an exact synonym of exactly one concept of another source merges the two
   under the same conditions (DOID "hiatus hernia", synonym "hiatal hernia" = RadLex "hiatal hernia").

A merged group never holds two concepts of the same source (a union that would do so is refused), so
merging cannot collapse a source's own hierarchy. The merged concept takes its id, name and semantic
type from the highest source in ``SOURCE_PRIORITY`` (DOID, RadLex, UMLS, SLAKE, curated); every other
member id becomes an xref and an alias that ``ConceptGraph.concept`` resolves.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field

from kg.concepts import MERGE_GROUPS, OTHER, SOURCE_PRIORITY, Concept, Relation, SourceData
from kg.curated import STUB_PREFIX
from kg.normalize import normalize_name

logger = logging.getLogger(__name__)

_MERGE_XREF_PREFIXES = ("UMLS:", "MESH:")


@dataclass
class MergedConcepts:
    """Result of merging: canonical concepts, relations between them and alias ids."""

    concepts: dict[str, Concept] = field(default_factory=dict)
    relations: list[Relation] = field(default_factory=list)
    aliases: dict[str, str] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)


class _Clusters:
    """Union-find over member ids that refuses to put two members of one source together."""

    def __init__(self, members: dict[str, tuple[str, Concept]]) -> None:
        self.members = members
        self.parent = {member_id: member_id for member_id in members}
        self.sources = {m: ({s} if s != "curated" else set()) for m, (s, _) in members.items()}
        self.refused = 0
        self.merged = 0

    def find(self, member_id: str) -> str:
        """Root of a member's cluster (with path compression)."""
        root = member_id
        while self.parent[root] != root:
            root = self.parent[root]
        while self.parent[member_id] != root:
            self.parent[member_id], member_id = root, self.parent[member_id]
        return root

    def union(self, first: str, second: str) -> None:
        """Join two clusters unless that would put two concepts of one source together."""
        a, b = self.find(first), self.find(second)
        if a == b:
            return
        if self.sources[a] & self.sources[b]:
            self.refused += 1
            return
        self.parent[b] = a
        self.sources[a] |= self.sources.pop(b)
        self.merged += 1

    def groups(self) -> dict[str, list[str]]:
        """Root -> member ids of every cluster."""
        result: dict[str, list[str]] = defaultdict(list)
        for member_id in self.members:
            result[self.find(member_id)].append(member_id)
        return result


def _unique_per_source(member_ids: Iterable[str], members: dict[str, tuple[str, Concept]]) -> list[str]:
    """Members whose source has exactly one member in ``member_ids`` (curated ones always kept)."""
    by_source: dict[str, list[str]] = defaultdict(list)
    for member_id in member_ids:
        by_source[members[member_id][0]].append(member_id)
    kept: list[str] = []
    for source, ids in by_source.items():
        if source == "curated" or len(ids) == 1:
            kept.extend(ids)
    return kept


def _merge_keys(source: str, concept: Concept) -> list[str]:
    keys = [concept.id]
    keys.extend(x for x in concept.xrefs if source == "curated" or x.startswith(_MERGE_XREF_PREFIXES))
    return keys


def _union_by_index(clusters: _Clusters, index: dict[str, list[str]]) -> None:
    for member_ids in index.values():
        usable = _unique_per_source(member_ids, clusters.members)
        for other in usable[1:]:
            clusters.union(usable[0], other)


def _name_indexes(members: dict[str, tuple[str, Concept]]) -> tuple[dict, dict]:
    names: dict[tuple[str, str], list[str]] = defaultdict(list)
    synonyms: dict[tuple[str, str], list[str]] = defaultdict(list)
    for member_id, (_, concept) in members.items():
        group = MERGE_GROUPS.get(concept.semantic_type)
        if group is None:
            continue
        names[(group, normalize_name(concept.name))].append(member_id)
        for synonym in concept.synonyms:
            synonyms[(group, normalize_name(synonym))].append(member_id)
    return names, synonyms


def _union_by_synonyms(clusters: _Clusters, names: dict, synonyms: dict) -> None:
    members = clusters.members
    for key, named in names.items():
        owners = _unique_per_source(synonyms.get(key, ()), members)
        named_sources = {members[m][0] for m in named}
        for owner in owners:
            source = members[owner][0]
            candidates = [m for m in _unique_per_source(named, members) if members[m][0] != source]
            if source not in named_sources and len({clusters.find(m) for m in candidates}) == 1:
                clusters.union(candidates[0], owner)


def _combine(member_ids: list[str], members: dict[str, tuple[str, Concept]]) -> Concept | None:
    """One concept from a cluster (None when it only holds curated stubs whose id no source has)."""
    rank = {source: i for i, source in enumerate(SOURCE_PRIORITY)}
    ordered = sorted(
        member_ids, key=lambda m: (rank.get(members[m][0], len(rank)), m.startswith(STUB_PREFIX), m)
    )
    if ordered[0].startswith(STUB_PREFIX):
        return None
    head = members[ordered[0]][1]
    concepts = [members[m][1] for m in ordered]
    seen = {normalize_name(head.name)}
    synonyms: list[str] = []
    for concept in concepts:
        for text in (concept.name, *concept.synonyms):
            key = normalize_name(text)
            if key and key not in seen:
                seen.add(key)
                synonyms.append(text)
    real_ids = [m for m in ordered[1:] if not m.startswith(STUB_PREFIX)]
    xrefs = dict.fromkeys([*real_ids, *(x for c in concepts for x in c.xrefs)])
    xrefs.pop(head.id, None)
    semantic_type = next((c.semantic_type for c in concepts if c.semantic_type != OTHER), OTHER)
    return Concept(
        id=head.id,
        name=head.name,
        synonyms=tuple(synonyms),
        semantic_type=semantic_type,
        xrefs=tuple(xrefs),
        sources=tuple(dict.fromkeys(members[m][0] for m in ordered)),
        definition=next((c.definition for c in concepts if c.definition), ""),
    )


def _aliases(result: MergedConcepts, canonical: dict[str, str], sources: list[SourceData]) -> None:
    for member_id, concept_id in canonical.items():
        if member_id != concept_id and not member_id.startswith(STUB_PREFIX):
            result.aliases[member_id] = concept_id
    for source in sources:
        for alias, target in source.aliases.items():
            if target in canonical:
                result.aliases.setdefault(alias, canonical[target])
    owners: dict[str, set[str]] = defaultdict(set)
    for concept in result.concepts.values():
        for xref in concept.xrefs:
            owners[xref].add(concept.id)
    for xref, concept_ids in owners.items():
        if len(concept_ids) == 1 and xref not in result.concepts:
            result.aliases.setdefault(xref, next(iter(concept_ids)))


def _relations(result: MergedConcepts, canonical: dict[str, str], sources: list[SourceData]) -> None:
    seen: dict[tuple[str, str, str], Relation] = {}
    dropped = 0
    for source in sources:
        for relation in source.relations:
            subject = canonical.get(relation.subject) or result.aliases.get(relation.subject)
            obj = canonical.get(relation.object) or result.aliases.get(relation.object)
            if subject is None or obj is None:
                dropped += 1
                continue
            if subject != obj:
                seen.setdefault(
                    (subject, relation.relation, obj), Relation(subject, relation.relation, obj, source.name)
                )
    result.relations = list(seen.values())
    result.counts["relations_unresolved"] = dropped


def _cluster(members: dict[str, tuple[str, Concept]]) -> _Clusters:
    """Apply the three merge rules in order."""
    clusters = _Clusters(members)
    key_index: dict[str, list[str]] = defaultdict(list)
    for member_id, (source_name, concept) in members.items():
        for key in _merge_keys(source_name, concept):
            key_index[key].append(member_id)
    _union_by_index(clusters, key_index)
    names, synonyms = _name_indexes(members)
    _union_by_index(clusters, names)
    _union_by_synonyms(clusters, names, synonyms)
    return clusters


def merge_sources(sources: list[SourceData]) -> MergedConcepts:
    """Merge the concepts of several loaded sources (see the module docstring for the rules).

    Args:
        sources: Loader outputs; concept ids must be unique across sources.

    Returns:
        MergedConcepts with canonical concepts, relations rewritten to canonical ids (self-loops and
        duplicates removed) and aliases (member ids, alt ids, unambiguous xrefs -> canonical id).
    """
    members = {cid: (source.name, c) for source in sources for cid, c in source.concepts.items()}
    clusters = _cluster(members)
    result = MergedConcepts()
    canonical: dict[str, str] = {}
    unresolved: list[str] = []
    for member_ids in clusters.groups().values():
        concept = _combine(member_ids, members)
        if concept is None:
            unresolved.extend(m[len(STUB_PREFIX) :] for m in member_ids)
            continue
        result.concepts[concept.id] = concept
        canonical.update(dict.fromkeys(member_ids, concept.id))
    if unresolved:
        logger.warning(
            "curated synonyms for ids no loaded source has were skipped: %s", ", ".join(unresolved)
        )
    _aliases(result, canonical, sources)
    _relations(result, canonical, sources)
    result.counts.update(merged=clusters.merged, refused=clusters.refused, curated_unresolved=len(unresolved))
    logger.info(
        "merged %d source concepts into %d (%d unions, %d refused as same-source)",
        len(members),
        len(result.concepts),
        clusters.merged,
        clusters.refused,
    )
    return result
