"""The analytic registry's contract, every method, over memory, SQLite and PostgreSQL.

Versions count per (analytic, scope) from 1; at most one is promoted per scope; promoting
retires the one before; a retired version cannot come back; reports stay with the version.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import datetime

import numpy as np
import pytest

from tvilling.analytics.binding.registry import (
    CANDIDATE,
    PROMOTED,
    RETIRED,
    AnalyticRegistry,
    Version,
    dump_artifact,
    load_artifact,
)
from tvilling.core.errors import Conflict, NotFound

ART = b"\x00\x01artifact\xff"


def add(registry: AnalyticRegistry, analytic: str = "a", scope: str = "pump-1", *, promote: bool = False,
        artifact: bytes = ART, **kw: object) -> Version:
    fields: dict[str, object] = {"fingerprint": "f1", "params": {"alpha": 0.5}, "metrics": {"rows": 10}} | kw
    return registry.add(analytic, scope, artifact, promote=promote, **fields)  # type: ignore[arg-type]


def states(registry: AnalyticRegistry, analytic: str = "a", scope: str = "pump-1") -> list[tuple[int, str]]:
    return [(v.version, v.status) for v in registry.versions(analytic, scope)]


# -- add -----------------------------------------------------------------------------------------------------


def test_add_returns_a_candidate_with_what_was_given(registry: AnalyticRegistry) -> None:
    v = add(registry, fingerprint="abc", params={"alpha": 0.5, "names": ["x", "y"]}, metrics={"rows": 10},
            backtest={"rmse": 1.5})
    assert (v.analytic, v.scope, v.version, v.status) == ("a", "pump-1", 1, CANDIDATE)
    assert (v.fingerprint, v.params, v.metrics, v.backtest, v.drift) == (
        "abc", {"alpha": 0.5, "names": ["x", "y"]}, {"rows": 10}, {"rmse": 1.5}, None)
    assert v.created.endswith("Z") and datetime.fromisoformat(v.created).tzinfo is not None
    assert registry.get("a", "pump-1", 1) == v


def test_versions_count_from_one_per_analytic_and_scope(registry: AnalyticRegistry) -> None:
    got = [add(registry, "a", "pump-1").version, add(registry, "a", "pump-1").version,
           add(registry, "a", "pump-2").version, add(registry, "b", "pump-1").version,
           add(registry, "a", "*").version, add(registry, "a", "pump-1").version]
    assert got == [1, 2, 1, 1, 1, 3]


def test_add_with_promote_promotes_and_retires_the_previous(registry: AnalyticRegistry) -> None:
    first = add(registry, promote=True)
    assert first.status == PROMOTED
    second = add(registry, promote=True)
    assert second.status == PROMOTED and states(registry) == [(1, RETIRED), (2, PROMOTED)]


def test_concurrent_adds_get_distinct_versions(registry: AnalyticRegistry) -> None:
    got: list[int] = []
    lock = threading.Lock()

    def worker() -> None:
        for _ in range(5):
            n = add(registry).version
            with lock:
                got.append(n)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(got) == list(range(1, 21))
    assert [n for n, _ in states(registry)] == list(range(1, 21))


# -- versions ------------------------------------------------------------------------------------------------


def test_versions_filter_and_order(registry: AnalyticRegistry) -> None:
    for analytic, scope in [("b", "pump-2"), ("a", "pump-2"), ("b", "pump-1"), ("a", "pump-1"), ("a", "pump-1")]:
        add(registry, analytic, scope)
    assert [(v.analytic, v.scope, v.version) for v in registry.versions()] == [
        ("a", "pump-1", 1), ("a", "pump-1", 2), ("a", "pump-2", 1), ("b", "pump-1", 1), ("b", "pump-2", 1)]
    assert [(v.scope, v.version) for v in registry.versions("a")] == [("pump-1", 1), ("pump-1", 2), ("pump-2", 1)]
    assert [(v.analytic, v.version) for v in registry.versions(scope="pump-2")] == [("a", 1), ("b", 1)]
    assert [v.version for v in registry.versions("b", "pump-1")] == [1]
    assert registry.versions("zzz") == [] and registry.versions("a", "nowhere") == []


def test_an_empty_registry_has_no_versions_and_nothing_promoted(registry: AnalyticRegistry) -> None:
    assert registry.versions() == [] and registry.promoted("a", "pump-1") is None


def test_what_a_caller_holds_is_its_own_copy(registry: AnalyticRegistry) -> None:
    params = {"alpha": 0.5}
    add(registry, params=params)
    params["alpha"] = 9.0  # the caller's dict changes after the add
    got = registry.get("a", "pump-1", 1)
    got.params["alpha"] = 7.0
    got.status = RETIRED
    listed = registry.versions()[0]
    listed.metrics["rows"] = -1
    again = registry.get("a", "pump-1", 1)
    assert (again.params, again.metrics, again.status) == ({"alpha": 0.5}, {"rows": 10}, CANDIDATE)


# -- get and artifact ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("where", [("a", "pump-1", 2), ("a", "pump-2", 1), ("b", "pump-1", 1), ("a", "pump-1", 0)])
def test_get_and_artifact_of_a_missing_version_are_not_found(registry: AnalyticRegistry,
                                                             where: tuple[str, str, int]) -> None:
    add(registry)
    with pytest.raises(NotFound) as got:
        registry.get(*where)
    assert got.value.fields.get("rule") == "version" and repr(where[0]) in got.value.message
    with pytest.raises(NotFound):
        registry.artifact(*where)


def test_the_artifact_comes_back_byte_for_byte_and_loads(registry: AnalyticRegistry) -> None:
    blob = bytes(range(256)) * 40
    add(registry, artifact=blob)
    model = dump_artifact({"weights": np.linspace(0.0, 1.0, 5), "n": 3})
    add(registry, artifact=model)
    assert registry.artifact("a", "pump-1", 1) == blob
    loaded = load_artifact(registry.artifact("a", "pump-1", 2))
    np.testing.assert_array_equal(loaded["weights"], np.linspace(0.0, 1.0, 5))
    assert loaded["n"] == 3


# -- promoted and promote ------------------------------------------------------------------------------------


def test_promoted_is_per_scope(registry: AnalyticRegistry) -> None:
    add(registry, "a", "pump-1", promote=True)
    add(registry, "a", "pump-1")
    add(registry, "a", "pump-2")
    p = registry.promoted("a", "pump-1")
    assert p is not None and (p.version, p.status, p.params) == (1, PROMOTED, {"alpha": 0.5})
    assert registry.promoted("a", "pump-2") is None and registry.promoted("b", "pump-1") is None


def test_promote_retires_only_the_promoted_one_of_that_scope(registry: AnalyticRegistry) -> None:
    add(registry, promote=True)
    add(registry)
    add(registry)
    add(registry, "a", "pump-2", promote=True)
    v = registry.promote("a", "pump-1", 3)
    assert (v.version, v.status) == (3, PROMOTED)
    assert states(registry) == [(1, RETIRED), (2, CANDIDATE), (3, PROMOTED)]
    assert states(registry, "a", "pump-2") == [(1, PROMOTED)]
    promoted = registry.promoted("a", "pump-1")
    assert promoted is not None and promoted.version == 3


def test_promoting_the_promoted_version_again_changes_nothing(registry: AnalyticRegistry) -> None:
    add(registry, promote=True)
    assert registry.promote("a", "pump-1", 1).status == PROMOTED
    assert states(registry) == [(1, PROMOTED)]


def test_a_retired_version_cannot_be_promoted_again(registry: AnalyticRegistry) -> None:
    add(registry, promote=True)
    add(registry, promote=True)
    with pytest.raises(Conflict) as got:
        registry.promote("a", "pump-1", 1)
    assert got.value.fields.get("rule") == "retired"
    assert states(registry) == [(1, RETIRED), (2, PROMOTED)]  # nothing changed


def test_promoting_a_missing_version_is_not_found_and_changes_nothing(registry: AnalyticRegistry) -> None:
    add(registry, promote=True)
    with pytest.raises(NotFound):
        registry.promote("a", "pump-1", 5)
    assert states(registry) == [(1, PROMOTED)]


# -- annotate ------------------------------------------------------------------------------------------------


def test_annotate_sets_each_report_and_keeps_the_other(registry: AnalyticRegistry) -> None:
    add(registry, backtest={"rmse": 3.0})
    v = registry.annotate("a", "pump-1", 1, drift={"drifting": True})
    assert (v.backtest, v.drift) == ({"rmse": 3.0}, {"drifting": True})
    v = registry.annotate("a", "pump-1", 1, backtest={"rmse": 2.0})
    assert (v.backtest, v.drift) == ({"rmse": 2.0}, {"drifting": True})
    v = registry.annotate("a", "pump-1", 1)  # nothing given: nothing changes
    got = registry.get("a", "pump-1", 1)
    assert v == got and (got.backtest, got.drift, got.status) == ({"rmse": 2.0}, {"drifting": True}, CANDIDATE)


def test_reports_survive_promotion_and_annotating_keeps_the_status(registry: AnalyticRegistry) -> None:
    add(registry)
    registry.annotate("a", "pump-1", 1, backtest={"rmse": 1.0})
    promoted = registry.promote("a", "pump-1", 1)
    assert promoted.backtest == {"rmse": 1.0}
    registry.annotate("a", "pump-1", 1, drift={"psi": 0.3})
    got = registry.promoted("a", "pump-1")
    assert got is not None and (got.status, got.backtest, got.drift) == (PROMOTED, {"rmse": 1.0}, {"psi": 0.3})


def test_annotating_a_missing_version_is_not_found(registry: AnalyticRegistry) -> None:
    with pytest.raises(NotFound):
        registry.annotate("a", "pump-1", 1, drift={"x": 1})


# -- the version document and durability ---------------------------------------------------------------------


def test_a_version_as_json(registry: AnalyticRegistry) -> None:
    doc = add(registry, promote=True).to_json()
    assert {k: doc[k] for k in ("analytic", "scope", "version", "status", "params", "metrics")} == {
        "analytic": "a", "scope": "pump-1", "version": 1, "status": PROMOTED, "params": {"alpha": 0.5},
        "metrics": {"rows": 10}}


def test_versions_outlive_a_reopen(store_kind: str, open_registry: Callable[[], AnalyticRegistry]) -> None:
    if store_kind == "memory":
        pytest.skip("the memory registry lives as long as its process, by design")
    first = open_registry()
    add(first, promote=True)
    add(first)
    first.annotate("a", "pump-1", 2, drift={"psi": 0.1})
    first.close()
    again = open_registry()
    assert states(again) == [(1, PROMOTED), (2, CANDIDATE)]
    assert again.get("a", "pump-1", 2).drift == {"psi": 0.1} and again.artifact("a", "pump-1", 1) == ART
    assert add(again).version == 3
