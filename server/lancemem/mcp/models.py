"""Typed tool input and results: each becomes part of a tool's schema."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class ChatMessage(BaseModel):
    """One chat message to remember."""

    # A misspelt key ('nmae') is refused, not dropped: the schema says so too.
    model_config = ConfigDict(extra="forbid")

    role: str = Field(description="'user', 'assistant' or 'tool'; 'system' messages are skipped.")
    content: str = Field(description="What was said.")
    name: str | None = Field(
        default=None, description="Who said it; stored as the memory's actor_id."
    )


class Scope(BaseModel):
    """The session ids a memory belongs to and who said it."""

    user_id: str | None = Field(default=None, description="Whose memory this is.")
    agent_id: str | None = Field(default=None, description="Which assistant it belongs to.")
    run_id: str | None = Field(default=None, description="Which conversation or session.")
    actor_id: str | None = Field(default=None, description="Who said it.")
    role: str | None = Field(default=None, description="The speaker's role.")


class AddEvent(Scope):
    """What add_memory did with one message."""

    id: str = Field(description="The memory's id.")
    memory: str = Field(description="The stored text.")
    event: str = Field(description="'ADD' (stored), 'NONE' (already stored in this scope, "
                                   "unchanged) or 'UPDATE' (the stored copy changed: an "
                                   "expired copy brought back, or given this call's metadata).")
    expiration_date: str | None = Field(
        default=None, description="When it expires (ISO-8601, UTC), if it does.")
    metadata: dict[str, Any] | None = Field(
        default=None, description="With UPDATE: the new custom metadata, when this call's "
                                  "metadata replaced the stored copy's.")


class AddResult(BaseModel):
    """The outcome of add_memory, one entry per stored or skipped message."""

    results: list[AddEvent]


class MemoryItem(Scope):
    """One memory."""

    id: str = Field(description="The memory's id, for get/update/delete/history.")
    memory: str = Field(description="The remembered text.")
    hash: str = Field(description="md5 of the text.")
    metadata: dict[str, Any] = Field(description="Custom metadata given when it was stored.")
    created_at: str = Field(description="When it was stored (ISO-8601, UTC).")
    updated_at: str = Field(description="When it last changed (ISO-8601, UTC).")
    expiration_date: str | None = Field(
        default=None, description="When it expires (ISO-8601, UTC), if it does: a date "
        "given as '2026-12-31' is 2027-01-01T00:00:00+00:00 here.")
    score: float | None = Field(
        default=None, description="Relevance to the query from 0 to 1 (search only): "
        "results are ordered by it, and threshold keeps those at least as high."
    )


class MemoryPage(BaseModel):
    """One page of a scope's memories, newest first."""

    results: list[MemoryItem]
    total: int = Field(description="How many memories the whole listing holds.")
    next_cursor: str | None = Field(
        description="Pass as cursor to get the next page; null when this page is the last.")


class ExportPage(BaseModel):
    """One page of a scope's export: the lines `lancemem export` writes."""

    lines: list[dict[str, Any]] = Field(description=(
        "type 'memory' lines (id, memory, hash, scope ids, actor_id, role, metadata, "
        "created_at, updated_at, expiration_date), each followed by its type 'history' "
        "lines when include_history; oldest first within the page."))
    total: int = Field(description="How many memories the scope holds (expired included).")
    next_cursor: str | None = Field(
        description="Pass as cursor to get the next page; null when this page is the last.")


class Deleted(BaseModel):
    """The outcome of delete_memory."""

    id: str
    deleted: bool


class DeletedCount(BaseModel):
    """The outcome of delete_all_memories."""

    deleted: int = Field(description="How many memories were deleted.")
    relations_deleted: int = Field(default=0, description=(
        "How many relations were deleted with them (none when filters were given)."))


class HistoryEntry(BaseModel):
    """One recorded change to a memory."""

    id: str
    memory_id: str
    event: str = Field(description="ADD, UPDATE or DELETE.")
    old_memory: str | None = None
    new_memory: str | None = None
    created_at: str
    updated_at: str
    is_deleted: bool
    actor_id: str | None = None
    role: str | None = None
    user_id: str | None = None
    agent_id: str | None = None
    run_id: str | None = None
    principal: str | None = Field(default=None, description=(
        "Who made the change on an authenticated server: token:<id> or jwt:<subject>."))
    principal_label: str | None = Field(default=None, description="The token's label, if any.")
    old_metadata: dict[str, Any] | None = Field(default=None, description=(
        "The custom metadata before the change (null for an ADD, or not recorded)."))
    new_metadata: dict[str, Any] | None = Field(default=None, description=(
        "The custom metadata after the change (null for a DELETE)."))


class HistoryList(BaseModel):
    """A memory's changes, oldest first."""

    results: list[HistoryEntry]
