"""`GET /concepts?q=` (find concepts by name or synonym) and `GET /concepts/{id}` (a concept card).

The card is `engine.knowledge.concept_card`: names, xrefs, parents, children, relations and the records of a
collection that mention the concept, by polarity (present / negated / uncertain).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query
from pydantic import BaseModel

from engine.errors import CollectionError
from engine.knowledge import concept_card, mentions_as_dicts
from ui.api.deps import CollectionName, Engine, open_collection
from ui.api.errors import ERROR_RESPONSES

router = APIRouter(prefix="/concepts", tags=["knowledge graph"], responses=ERROR_RESPONSES)


class ConceptBrief(BaseModel):
    id: str
    name: str
    semantic_type: str | None = None
    synonyms: list[str] = []


class ConceptList(BaseModel):
    query: str
    concepts: list[ConceptBrief]
    mentions: list[dict[str, Any]]  # what the linker finds in the query text (spans, negated, uncertain)


def _knowledge(workspace: Any) -> Any:
    knowledge = workspace.knowledge()
    if knowledge is None:
        raise CollectionError("the knowledge graph is disabled on this server (kg_enabled = false)")
    return knowledge


@router.get("", response_model=ConceptList, summary="Find concepts by name or synonym, and link the text")
def find_concepts(
    engine: Engine, q: str = Query(..., min_length=1, max_length=500), limit: int = Query(10, ge=1, le=100)
) -> ConceptList:
    with engine.use() as workspace:
        knowledge = _knowledge(workspace)
        found = knowledge.graph.find(q, limit=limit)
        mentions = mentions_as_dicts(knowledge.linker.link(q))
    concepts = [
        ConceptBrief(id=c.id, name=c.name, semantic_type=c.semantic_type, synonyms=list(c.synonyms[:10]))
        for c in found
    ]
    return ConceptList(query=q, concepts=concepts, mentions=mentions)


@router.get("/{concept_id:path}", summary="A concept: synonyms, xrefs, hierarchy, relations, linked records")
def get_concept(
    concept_id: str, engine: Engine, collection: CollectionName = None, limit: int = Query(20, ge=1, le=200)
) -> dict[str, Any]:
    with engine.use() as workspace:
        knowledge = _knowledge(workspace)
        concept = knowledge.graph.concept(concept_id)
        linked = {}
        if collection or workspace.settings.collection in workspace.collection_names():
            linked = open_collection(workspace, collection).records_mentioning([concept.id])
        return concept_card(knowledge, concept.id, linked, limit=limit)
