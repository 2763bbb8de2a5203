"""The relation tools: thin, typed wrappers over Memory's relation methods.

build_server (server.py) wraps them like the memory tools: bound to the
caller, pinned ids applied, errors coded.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from mcp.types import ToolAnnotations
from pydantic import Field

from ..memory.facade import Memory
from .auth import current_principal
from .relation_models import RelationInput, RelationList, RelationsDeleted, RelationTriple
from .scope_fields import scope_id_fields

Call = Callable[..., Awaitable[Any]]

UserId, AgentId, RunId = scope_id_fields("relations")


def relation_tools(memory: Memory, call: Call, *, read: ToolAnnotations,
                   write: ToolAnnotations,
                   destroy: ToolAnnotations) -> list[tuple[Callable[..., Any], ToolAnnotations]]:
    """The four relation tools over ``memory``, each with its annotations."""

    async def add_relations(
        relations: Annotated[list[RelationInput], Field(
            description="The relations to remember (1 to 100), e.g. [{\"source\": \"Alice\", "
            "\"relationship\": \"works at\", \"target\": \"Acme\"}].")],
        user_id: UserId = None, agent_id: AgentId = None, run_id: RunId = None,
        actor_id: Annotated[str | None, Field(description="Who stated these relations.")] = None,
        replace: Annotated[bool, Field(
            description="True when the new relations supersede old ones: a stored relation "
            "with the same source and relationship but another target becomes invalid "
            "(kept, with valid false), e.g. a new employer or a new city.")] = False,
    ) -> RelationList:
        """Remember how people, places and things relate to each other.

        Use when the user states a relationship: "Alice works at Acme" is
        {"source": "Alice", "relationship": "works at", "target": "Acme"}. Names are
        matched to the entities already known in the scope (case and spacing ignored,
        or a name meaning the same), so use the names the user uses. A relation already
        stored comes back with event NONE. When a fact changed (Alice moved to another
        employer), pass replace=true so the old relation is invalidated.
        """
        return RelationList.model_validate(await call(
            memory.add_relations, [r.model_dump(exclude_none=True) for r in relations],
            user_id=user_id, agent_id=agent_id, run_id=run_id, actor_id=actor_id,
            replace=replace, principal=current_principal()))

    async def search_relations(
        query: Annotated[str, Field(description="What to look for, in natural language, "
                                    "e.g. \"Where is Alice's employer based?\".")],
        user_id: UserId = None, agent_id: AgentId = None, run_id: RunId = None,
        limit: Annotated[int, Field(ge=1, le=100, description="At most this many.")] = 10,
    ) -> RelationList:
        """Find relations about the people and things a question is about, best first.

        Returns the relations of every entity the query names or means, and the
        relations of their direct neighbours (one hop), so "Where is Alice's employer
        based?" finds alice works_at acme and acme headquartered_in berlin. Each has a
        score in [0, 1]. Invalidated relations are left out.
        """
        return RelationList.model_validate(await call(
            memory.search_relations, query, user_id=user_id, agent_id=agent_id,
            run_id=run_id, limit=limit))

    async def list_relations(
        user_id: UserId = None, agent_id: AgentId = None, run_id: RunId = None,
        entity: Annotated[str | None, Field(
            description="Only relations whose source or target is this entity.")] = None,
        relationship: Annotated[str | None, Field(
            description="Only relations of this kind, e.g. 'works at'.")] = None,
        limit: Annotated[int, Field(ge=1, le=1000, description="At most this many.")] = 100,
        show_invalid: Annotated[bool, Field(
            description="Also list relations that a newer one replaced.")] = False,
    ) -> RelationList:
        """List the relations in a scope, newest first.

        Use to review what is known about how people and things relate, or everything
        about one entity (entity='Alice').
        """
        return RelationList.model_validate(await call(
            memory.list_relations, user_id=user_id, agent_id=agent_id, run_id=run_id,
            entity=entity, relationship=relationship, limit=limit, show_invalid=show_invalid))

    async def delete_relations(
        relation_ids: Annotated[list[str] | None, Field(
            description="Ids of the relations to delete, as returned by add, search or "
            "list. Give this or relations.")] = None,
        relations: Annotated[list[RelationTriple] | None, Field(
            description="Relations to delete by their source, relationship and target. "
            "Give this or relation_ids.")] = None,
        user_id: UserId = None, agent_id: AgentId = None, run_id: RunId = None,
    ) -> RelationsDeleted:
        """Forget relations, by id or by source, relationship and target.

        Use when the user says a relationship is wrong or should be forgotten. When a
        fact changed, prefer add_relations with replace=true, which keeps the old one
        as invalid. Reports how many were deleted and what matched nothing.
        """
        triples = None if relations is None else [r.model_dump() for r in relations]
        return RelationsDeleted.model_validate(await call(
            memory.delete_relations, relation_ids=relation_ids, relations=triples,
            user_id=user_id, agent_id=agent_id, run_id=run_id,
            principal=current_principal()))

    return [(add_relations, write), (search_relations, read), (list_relations, read),
            (delete_relations, destroy)]
