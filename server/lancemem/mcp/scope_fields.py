"""The scope id parameters that every tool takes, as the assistant reads them."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field


def scope_id_fields(kind: str) -> tuple[Any, Any, Any]:
    """The ``user_id``, ``agent_id`` and ``run_id`` parameter types of the tools
    on ``kind`` ("memories", "relations"), each with its description."""
    user_id = Annotated[str | None, Field(
        description=f"Whose {kind}: the end user's id, e.g. 'alice'. If omitted, the "
        "server's default user; with no default, the call spans every user that matches "
        "the other ids.")]
    agent_id = Annotated[str | None, Field(
        description=f"Which assistant or agent the {kind} belong to, e.g. 'coding-helper'.")]
    run_id = Annotated[str | None, Field(
        description=f"Which conversation or session, e.g. a chat id; omit for {kind} that "
        "outlive one session.")]
    return user_id, agent_id, run_id
