"""The policy evaluator (pure): grant and revoke, subjects, globs, models, subgraphs, paths, kinds, redaction."""

from __future__ import annotations

from typing import Any

import pytest

from tvilling.core.errors import Invalid
from tvilling.core.principal import Principal
from tvilling.security.enforce import SubgraphIndex
from tvilling.security.policies import Evaluator, Policy, evaluate, redact

VIEWER = Principal(id="token:ops", kind="service", roles=("viewer",), authenticated=True)
OPERATOR = Principal(id="alice@example.com", kind="user", roles=("operator",), authenticated=True)
ADMIN = Principal(id="token:root", kind="service", roles=("admin",), authenticated=True)
GRAPH = {"line-1": ["line-1-m01", "line-1-m02"], "line-1-m01": ["line-1-m01-b1"], "line-2": ["line-2-m01"],
         "line-1-m02": ["line-1"]}  # a cycle back to the line: the walk must end


def members(root: str) -> frozenset[str]:
    return SubgraphIndex(lambda t: GRAPH.get(t, [])).members(root)


def policy(*entries: dict[str, Any], subjects: tuple[str, ...] = ("token:ops",), pid: str = "p") -> Policy:
    return Policy.from_json({"id": pid, "subjects": list(subjects), "entries": list(entries)})


def grant(actions: list[str], *resources: str, **kw: Any) -> dict[str, Any]:
    return {"effect": "grant", "actions": actions, "resources": list(resources), **kw}


def revoke(actions: list[str], *resources: str, **kw: Any) -> dict[str, Any]:
    return {"effect": "revoke", "actions": actions, "resources": list(resources), **kw}


def test_no_policy_means_the_role_decides() -> None:
    assert evaluate([], VIEWER, "read", "line-2-m01").allowed
    assert not evaluate([], VIEWER, "write", "line-2-m01").allowed
    assert evaluate([], OPERATOR, "execute", "line-2-m01", "commands.setSpeed").allowed
    other = policy(grant(["read"], "twin:line-1*"), subjects=("token:other",))
    assert evaluate([other], VIEWER, "read", "line-2-m01").allowed  # a policy for someone else changes nothing


def test_a_grant_limits_the_action_to_what_it_names_and_leaves_other_actions_to_the_role() -> None:
    p = policy(grant(["read"], "twin:line-1-*"))
    assert evaluate([p], VIEWER, "read", "line-1-m01").allowed
    d = evaluate([p], VIEWER, "read", "line-2-m01")
    assert not d.allowed and "line-2" not in d.reason
    p = policy(grant(["execute"], "twin:line-1-m01", paths=["commands.setSpeed"]), subjects=("role:operator",))
    assert evaluate([p], OPERATOR, "execute", "line-1-m01", "commands.setSpeed").allowed
    assert not evaluate([p], OPERATOR, "execute", "line-1-m01", "commands.stop").allowed
    assert not evaluate([p], OPERATOR, "execute", "line-2-m01", "commands.setSpeed").allowed
    assert evaluate([p], OPERATOR, "read", "line-2-m01").allowed  # read: no grant names it, the role decides


def test_the_role_is_a_ceiling_a_grant_cannot_raise() -> None:
    p = policy(grant(["write", "read"], "twin:*"))
    assert not evaluate([p], VIEWER, "write", "line-1-m01").allowed
    assert evaluate([p], VIEWER, "read", "line-1-m01").allowed


def test_revoke_beats_grant_in_the_same_or_another_policy() -> None:
    same = policy(grant(["read"], "twin:*"), revoke(["read"], "twin:line-2-*"))
    assert not evaluate([same], VIEWER, "read", "line-2-m01").allowed
    assert evaluate([same], VIEWER, "read", "line-1-m01").allowed
    other = policy(revoke(["read"], "twin:line-1-m01"), subjects=("role:viewer",), pid="q")
    d = evaluate([same, other], VIEWER, "read", "line-1-m01")
    assert not d.allowed and d.reason == "revoked by policy q"


@pytest.mark.parametrize(("subject", "applies"), [
    ("token:ops", True), ("token:o*", True), ("token:?ps", True), ("*", True), ("role:viewer", True),
    ("role:operator", False), ("token:op", False), ("ops", False), ("alice*", False)])
def test_subjects_are_roles_or_id_globs(subject: str, applies: bool) -> None:
    p = policy(revoke(["read"], "twin:*"), subjects=(subject,))
    assert evaluate([p], VIEWER, "read", "line-1-m01").allowed is not applies


def test_twin_globs_are_case_sensitive_and_anchored() -> None:
    p = policy(grant(["read"], "twin:line-1-m0?"))
    assert evaluate([p], VIEWER, "read", "line-1-m01").allowed
    assert not evaluate([p], VIEWER, "read", "LINE-1-m01").allowed
    assert not evaluate([p], VIEWER, "read", "line-1-m01-b1").allowed
    assert not evaluate([p], VIEWER, "read", "x-line-1-m01").allowed


def test_model_selector_uses_the_given_or_looked_up_model() -> None:
    p = policy(grant(["read"], "model:dtmi:tvilling:example:Bearing;*"))
    assert evaluate([p], VIEWER, "read", "b1", model="dtmi:tvilling:example:Bearing;1").allowed
    assert not evaluate([p], VIEWER, "read", "m1", model="dtmi:tvilling:example:Machine;1").allowed
    looked: list[str] = []

    def model_of(twin: str) -> str:
        looked.append(twin)
        return "dtmi:tvilling:example:Bearing;1" if twin.endswith("b1") else "dtmi:tvilling:example:Machine;1"

    ev = Evaluator([p], VIEWER, model_of=model_of)
    assert ev.decide("read", "line-1-m01-b1").allowed and not ev.decide("read", "line-1-m01").allowed
    assert ev.decide("read", "line-1-m01-b1").allowed and looked == ["line-1-m01-b1", "line-1-m01"]  # cached


def test_subgraph_is_the_twin_and_everything_under_it() -> None:
    p = policy(grant(["read"], "subgraph:line-1"))
    for twin in ("line-1", "line-1-m01", "line-1-m01-b1", "line-1-m02"):
        assert evaluate([p], VIEWER, "read", twin, members=members).allowed, twin
    for twin in ("line-2", "line-2-m01", "line-10"):
        assert not evaluate([p], VIEWER, "read", twin, members=members).allowed, twin
    sub = policy(grant(["read"], "subgraph:line-1-m01"))
    assert not evaluate([sub], VIEWER, "read", "line-1", members=members).allowed  # not above the root


def test_paths_revoke_only_there_and_cover_what_is_under_them() -> None:
    p = policy(revoke(["read"], "twin:*", paths=["reported.temperature", "desired.*"]))
    assert evaluate([p], VIEWER, "read", "b1").allowed  # the twin itself stays readable
    assert not evaluate([p], VIEWER, "read", "b1", "reported.temperature").allowed
    assert not evaluate([p], VIEWER, "read", "b1", "reported.temperature.max").allowed
    assert evaluate([p], VIEWER, "read", "b1", "reported.temperatureMax").allowed
    assert not evaluate([p], VIEWER, "read", "b1", "desired.speed").allowed
    assert evaluate([p], VIEWER, "read", "b1", "reported.speed").allowed


def test_kinds_alone_or_scoped_to_a_selector() -> None:
    p = policy(revoke(["read"], "history:subgraph:line-2"), revoke(["read"], "alarms"))
    assert not evaluate([p], VIEWER, "read", "line-2-m01", kind="history", members=members).allowed
    assert evaluate([p], VIEWER, "read", "line-1-m01", kind="history", members=members).allowed
    assert evaluate([p], VIEWER, "read", "line-2-m01", kind="twin", members=members).allowed
    assert not evaluate([p], VIEWER, "read", "line-1-m01", kind="alarms", members=members).allowed
    twin_grant = policy(grant(["read"], "twin:line-1-*"))  # a twin selector covers every kind of its data
    assert evaluate([twin_grant], VIEWER, "read", "line-1-m01", kind="history").allowed
    assert not evaluate([twin_grant], VIEWER, "read", "line-2-m01", kind="workorders").allowed
    dl = policy(grant(["admin"], "dead-letters"), subjects=("token:root",))
    assert evaluate([dl], ADMIN, "admin", None, kind="dead-letters").allowed
    assert not evaluate([dl], VIEWER, "admin", None, kind="dead-letters").allowed  # the role, not the policy


def test_redaction_removes_hidden_paths_from_sections_metadata_and_delta_without_touching_the_source() -> None:
    p = policy(revoke(["read"], "twin:*", paths=["reported.temperature", "desired.speed"]))
    doc: dict[str, Any] = {"id": "b1", "reported": {"temperature": 71.25, "speed": 3}, "desired": {"speed": 5},
           "delta": {"speed": 5}, "metadata": {"reported": {"temperature": {"time": "t"}, "speed": {"time": "t"}},
                                               "desired": {"speed": {"time": "t"}}}}
    ev = Evaluator([p], VIEWER)
    hidden = ev.hidden_paths("b1", None, {"reported": doc["reported"], "desired": doc["desired"]})
    assert sorted(hidden) == [("desired", "speed"), ("reported", "temperature")]
    out = redact(doc, hidden)
    assert out["reported"] == {"speed": 3} and out["desired"] == {} and out["delta"] == {}
    assert out["metadata"] == {"reported": {"speed": {"time": "t"}}, "desired": {}}
    assert doc["reported"]["temperature"] == 71.25 and "speed" in doc["delta"]  # the source is unchanged
    assert "71.25" not in repr(out)


@pytest.mark.parametrize("doc", [
    {"subjects": [], "entries": [{"effect": "grant", "actions": ["read"], "resources": ["twin:*"]}]},
    {"subjects": ["role:root"], "entries": [{"effect": "grant", "actions": ["read"], "resources": ["twin:*"]}]},
    {"subjects": ["*"], "entries": [{"effect": "allow", "actions": ["read"], "resources": ["twin:*"]}]},
    {"subjects": ["*"], "entries": [{"effect": "grant", "actions": ["fly"], "resources": ["twin:*"]}]},
    {"subjects": ["*"], "entries": [{"effect": "grant", "actions": ["read"], "resources": ["pump:*"]}]},
    {"subjects": ["*"], "entries": [{"effect": "grant", "actions": ["read"], "resources": ["twin:"]}]},
    {"subjects": ["*"], "entries": [{"effect": "grant", "actions": ["read"], "resources": ["twin:*"],
                                     "paths": ["reported..x"]}]},
    {"subjects": ["*"], "entries": []},
    {"subjects": ["*"], "entries": [], "extra": 1},
])
def test_a_bad_policy_is_invalid(doc: dict[str, Any]) -> None:
    with pytest.raises(Invalid):
        Policy.from_json({"id": "p", **doc})


def test_the_path_id_fills_or_must_match_the_body_id() -> None:
    body = {"subjects": ["*"], "entries": [{"effect": "grant", "actions": ["read"], "resources": ["twin:*"]}]}
    assert Policy.from_json(body, policy_id="a").id == "a"
    with pytest.raises(Invalid, match="not the id in the path"):
        Policy.from_json({**body, "id": "b"}, policy_id="a")
    with pytest.raises(Invalid):
        Policy.from_json(body, policy_id="bad id with spaces")


def test_subgraph_index_follows_changes_after_its_ttl_and_counts_generations() -> None:
    graph: dict[str, list[str]] = {"L": ["M"]}
    clock = {"v": 0}
    index = SubgraphIndex(lambda t: graph.get(t, []), lambda: clock["v"], ttl_s=0.0)
    assert index.members("L") == {"L", "M"} and index.refresh() == 0
    graph["M"] = ["B"]
    assert index.refresh() == 0  # the feed did not move: nothing rebuilt
    clock["v"] = 1
    assert index.refresh() == 1 and index.members("L") == {"L", "M", "B"}
