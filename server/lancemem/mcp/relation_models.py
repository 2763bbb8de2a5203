"""Typed relation input and results: each becomes part of a relation tool's schema."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from .models import MemoryItem


class RelationTriple(BaseModel):
    """One relation named by its two ends and how they relate."""

    # A misspelt key ('taget') is refused, not dropped.
    model_config = ConfigDict(extra="forbid")

    source: str = Field(description="The entity the relation starts from, e.g. 'Alice'.")
    relationship: str = Field(description="How they relate, in a few words, e.g. 'works at' "
                              "(stored as lower_snake_case: works_at).")
    target: str = Field(description="The entity it points to, e.g. 'Acme'.")


class RelationInput(RelationTriple):
    """One relation to remember, optionally with the kinds of its two ends."""

    source_type: str | None = Field(default=None, description="What the source is, e.g. "
                                    "'person' (stored as lower_snake_case).")
    target_type: str | None = Field(default=None, description="What the target is, e.g. "
                                    "'company'.")


class RelationItem(BaseModel):
    """One stored relation between two entities of a scope."""

    id: str = Field(description="The relation's id, for delete_relations.")
    source: str = Field(description="The source entity, spelt as first stored.")
    relationship: str = Field(description="How source relates to target (lower_snake_case).")
    target: str = Field(description="The target entity, spelt as first stored.")
    source_type: str | None = Field(default=None, description="What the source is.")
    target_type: str | None = Field(default=None, description="What the target is.")
    valid: bool = Field(description="False once a newer relation replaced it (replace=true).")
    invalidated_at: str | None = Field(default=None, description="When it was replaced.")
    created_at: str = Field(description="When it was stored (ISO-8601, UTC).")
    updated_at: str = Field(description="When it last changed (ISO-8601, UTC).")
    user_id: str | None = Field(default=None, description="Whose relation this is.")
    agent_id: str | None = Field(default=None, description="Which assistant it belongs to.")
    run_id: str | None = Field(default=None, description="Which conversation or session.")
    actor_id: str | None = Field(default=None, description="Who stated it.")
    score: float | None = Field(default=None, description="Relevance to the query in [0, 1] "
                                "(searches only); higher is closer.")
    event: str | None = Field(default=None, description="add_relations only: 'ADD' (stored), "
                              "'NONE' (already stored in this scope) or 'INVALIDATE' (an "
                              "older relation that this call replaced).")


class RelationList(BaseModel):
    """Several relations."""

    results: list[RelationItem]


class RelationsDeleted(BaseModel):
    """The outcome of delete_relations."""

    deleted: int = Field(description="How many relations were deleted.")
    not_found: list[str] = Field(description="Ids or triples ('source -[relationship]-> "
                                 "target') that matched no relation in this scope.")


class SearchResult(BaseModel):
    """The outcome of search_memories: memories, and the relations beside them."""

    results: list[MemoryItem]
    relations: list[RelationItem] = Field(description=(
        "Relations in this scope touching entities that the query or the returned "
        "memories name, best first (empty when there are none)."))
