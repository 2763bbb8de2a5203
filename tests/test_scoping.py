"""The scoping rules of DESIGN.md, exhaustively: a pure function, no storage."""

from __future__ import annotations

import copy
import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lancemem.core.errors import (
    InvalidIdError,
    ReservedKeyError,
    ScopeConflictError,
    ScopeRequiredError,
    ValidationError,
)
from lancemem.core.scoping import (
    RESERVED_KEYS,
    SCOPE_KEYS,
    Scope,
    ScopedCall,
    build_filters_and_metadata,
    scope_where,
)
from tests.attack import ATTACK_IDS

IDS = {"user_id": "alice", "agent_id": "claude", "run_id": "run-1"}
COMBINATIONS = [
    combo for size in (1, 2, 3) for combo in itertools.combinations(SCOPE_KEYS, size)
]


@pytest.mark.parametrize("combo", COMBINATIONS, ids="+".join)
def test_every_combination_goes_to_metadata_and_filters(combo: tuple[str, ...]) -> None:
    given_ids = {key: IDS[key] for key in combo}
    call = build_filters_and_metadata(**given_ids)
    assert call.metadata == given_ids
    assert call.scope.given() == given_ids and call.scope.actor_id is None
    assert call.filters is None
    assert call.where() == " AND ".join(f"{key} = '{value}'" for key, value in given_ids.items())


@pytest.mark.parametrize(
    "kwargs",
    [{}, {"actor_id": "bob"}, {"input_metadata": {"k": "v"}}, {"input_filters": {"k": "v"}},
     {"user_id": None, "agent_id": None, "run_id": None}],
)
def test_no_scope_id_is_validation_001(kwargs: dict) -> None:
    with pytest.raises(ScopeRequiredError) as info:
        build_filters_and_metadata(**kwargs)
    assert info.value.code == "VALIDATION_001"
    assert str(info.value) == (
        "VALIDATION_001: At least one of 'user_id', 'agent_id', or 'run_id' must be provided."
    )


def test_ids_are_stripped() -> None:
    call = build_filters_and_metadata(user_id="  alice \t")
    assert call.metadata["user_id"] == call.scope.user_id == "alice"


@pytest.mark.parametrize("field", (*SCOPE_KEYS, "actor_id"))
@pytest.mark.parametrize(
    "bad", ["", "   ", "a\nb", "a\x00b", "tab\there", "\x7f", "x" * 257, 42, ["alice"]],
    ids=["empty", "blank", "newline", "nul", "tab", "del", "too-long", "int", "list"],
)
def test_invalid_ids_are_validation_002(field: str, bad: object) -> None:
    kwargs = {"user_id": "alice", field: bad}
    with pytest.raises(InvalidIdError) as info:
        build_filters_and_metadata(**kwargs)
    assert info.value.code == "VALIDATION_002"
    assert f"'{field}'" in info.value.message


def test_longest_allowed_id_and_unicode() -> None:
    metadata = build_filters_and_metadata(user_id="x" * 256, agent_id="agent-ü-日本").metadata
    assert metadata["user_id"] == "x" * 256
    assert metadata["agent_id"] == "agent-ü-日本"


def test_actor_parameter_and_a_different_plain_actor_filter_conflict() -> None:
    # Neither may silently drop the other (the issue that found it: the filter
    # was dropped, so a delete_all removed memories its filter excluded).
    with pytest.raises(ScopeConflictError) as info:
        build_filters_and_metadata(user_id="alice", actor_id="bob",
                                   input_filters={"actor_id": "carol"})
    assert "carol" in info.value.message and "bob" in info.value.message


def test_actor_parameter_and_the_same_plain_actor_filter_agree() -> None:
    call = build_filters_and_metadata(user_id="alice", actor_id="bob",
                                      input_filters={"actor_id": " bob"})
    assert call.scope == Scope(user_id="alice", actor_id="bob") and call.filters is None


def test_actor_parameter_and_an_actor_operator_filter_are_anded() -> None:
    call = build_filters_and_metadata(user_id="carol", actor_id="dave",
                                      input_filters={"actor_id": {"ne": "dave"}})
    assert call.scope == Scope(user_id="carol", actor_id="dave")
    assert call.filters == {"actor_id": {"ne": "dave"}}
    assert call.where().startswith("user_id = 'carol' AND actor_id = 'dave' AND (")


def test_actor_from_filters_when_no_parameter() -> None:
    call = build_filters_and_metadata(user_id="alice", input_filters={"actor_id": "carol"})
    assert call.scope == Scope(user_id="alice", actor_id="carol") and call.filters is None
    assert "actor_id" not in call.metadata


def test_no_actor_means_no_actor_filter() -> None:
    call = build_filters_and_metadata(user_id="alice")
    assert call.scope.actor_id is None and "actor_id" not in call.where()


@pytest.mark.parametrize("key", sorted(RESERVED_KEYS))
def test_reserved_metadata_key_is_rejected_by_name(key: str) -> None:
    with pytest.raises(ReservedKeyError) as info:
        build_filters_and_metadata(user_id="alice", input_metadata={key: "x", "ok": 1})
    assert info.value.code == "VALIDATION_003"
    assert f"'{key}'" in info.value.message


def test_custom_metadata_is_kept_beside_scope() -> None:
    call = build_filters_and_metadata(
        user_id="alice", input_metadata={"topic": "food", "tags": ["a"]}
    )
    assert call.metadata == {"topic": "food", "tags": ["a"], "user_id": "alice"}
    assert call.scope == Scope(user_id="alice") and call.filters is None


@pytest.mark.parametrize("key", SCOPE_KEYS)
def test_conflicting_id_in_filters_is_an_error(key: str) -> None:
    with pytest.raises(ScopeConflictError) as info:
        build_filters_and_metadata(**{key: "alice"}, input_filters={key: "mallory"})
    assert info.value.code == "VALIDATION_004"
    assert "mallory" in info.value.message


def test_same_id_in_filters_is_accepted() -> None:
    call = build_filters_and_metadata(user_id="alice", input_filters={"user_id": " alice"})
    assert call.scope == Scope(user_id="alice") and call.filters is None


def test_id_given_only_in_filters_is_the_scope() -> None:
    call = build_filters_and_metadata(input_filters={"agent_id": "claude"})
    assert call.metadata == {"agent_id": "claude"}
    assert call.scope == Scope(agent_id="claude") and call.filters is None


def test_operator_on_scope_key_only_narrows() -> None:
    call = build_filters_and_metadata(
        user_id="alice", input_filters={"user_id": {"in": ["alice", "mallory"]}, "k": 1}
    )
    assert call.scope == Scope(user_id="alice")
    assert call.filters == {"user_id": {"in": ["alice", "mallory"]}, "k": 1}
    assert call.where().startswith("user_id = 'alice' AND (")


def test_inputs_are_never_mutated_or_shared() -> None:
    metadata_in = {"topic": "food", "nested": {"a": [1, 2]}}
    filters_in = {"actor_id": "carol", "nested": {"b": 1}}
    before = copy.deepcopy((metadata_in, filters_in))
    call = build_filters_and_metadata(
        user_id="alice", input_metadata=metadata_in, input_filters=filters_in
    )
    assert (metadata_in, filters_in) == before
    call.metadata["nested"]["a"].append(3)
    call.filters["nested"]["b"] = 2
    assert (metadata_in, filters_in) == before


@pytest.mark.parametrize("bad", [["topic"], "topic=food", 3])
def test_metadata_and_filters_must_be_objects(bad: object) -> None:
    with pytest.raises(ValidationError):
        build_filters_and_metadata(user_id="alice", input_metadata=bad)  # type: ignore[arg-type]
    with pytest.raises(ValidationError):
        build_filters_and_metadata(user_id="alice", input_filters=bad)  # type: ignore[arg-type]


@given(st.text(max_size=300))
def test_any_string_id_is_accepted_stripped_or_rejected_cleanly(value: str) -> None:
    try:
        call = build_filters_and_metadata(user_id=value)
    except InvalidIdError:
        stripped = value.strip()
        assert (
            not stripped
            or len(stripped) > 256
            or any(ord(c) < 32 or 127 <= ord(c) < 160 or 0xD800 <= ord(c) <= 0xDFFF
                   for c in stripped)
        )
    else:
        assert call.metadata["user_id"] == call.scope.user_id == value.strip()
        assert call.where() == "user_id = '" + value.strip().replace("'", "''") + "'"


# ---------------------------------------------------------------- the scope is a value




@pytest.mark.parametrize("value", ATTACK_IDS)
@pytest.mark.parametrize("key", SCOPE_KEYS)
def test_scope_ids_compile_to_literal_equality_only(key: str, value: str) -> None:
    for call in (build_filters_and_metadata(**{key: value}),
                 build_filters_and_metadata(input_filters={key: value})):
        quoted = "'" + value.strip().replace("'", "''") + "'"
        assert call.where() == f"{key} = {quoted}"
        assert call.filters is None  # nothing reached the filter language


def test_actor_argument_is_a_literal_and_a_star_actor_filter_only_narrows() -> None:
    call = build_filters_and_metadata(user_id="u", actor_id="*")
    assert call.where() == "user_id = 'u' AND actor_id = '*'"
    present = build_filters_and_metadata(user_id="u", actor_id="bob",
                                         input_filters={"actor_id": "*"})
    assert present.scope == Scope(user_id="u", actor_id="bob")
    assert present.where() == "user_id = 'u' AND actor_id = 'bob' AND (actor_id IS NOT NULL)"


def test_defaults_fill_ids_left_out_but_operator_filters_do_not_suppress_them() -> None:
    defaults = {"user_id": "alice", "agent_id": "helper"}
    call = build_filters_and_metadata(agent_id="other", defaults=defaults,
                                      input_filters={"user_id": {"ne": "zed"}})
    assert call.scope == Scope(user_id="alice", agent_id="other")
    plain = build_filters_and_metadata(defaults=defaults, input_filters={"user_id": "bob"})
    assert plain.scope == Scope(user_id="bob", agent_id="helper")


def test_scope_where_refuses_an_empty_scope() -> None:
    with pytest.raises(ScopeRequiredError):
        scope_where(Scope(actor_id="bob"))
    assert isinstance(build_filters_and_metadata(run_id="r"), ScopedCall)
