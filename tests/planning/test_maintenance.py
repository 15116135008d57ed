"""The maintenance planner: decisions, resources, re-planning, rationale, conflicts and bad input."""

from __future__ import annotations

import itertools
import json
from dataclasses import replace
from datetime import datetime

import pytest

from tvilling.core.errors import Invalid
from tvilling.planning.failure import fit_failure
from tvilling.planning.maintenance import (
    MaintenanceInfeasible,
    MaintenancePlan,
    PlannedWorkOrder,
    plan_maintenance,
    to_proposals,
)
from tvilling.planning.maintenance_instances import generate_problem
from tvilling.planning.maintenance_options import prepare
from tvilling.planning.maintenance_solvers import solve, violations
from tvilling.planning.maintenance_types import (
    Asset,
    ExistingOrder,
    Interval,
    MaintenanceProblem,
    PartNeed,
    PartStock,
    TaskType,
    Technician,
    Window,
    downtime_rate,
)

BEARING = TaskType("bearing", "pump", 4.0, ("mech",), preventive_cost=1000.0, corrective_cost=5000.0,
                   corrective_downtime_h=24.0, parts=(PartNeed("bearing-kit", 1),))
ANA = Technician("ana", ("mech", "elec"), (Interval(0.0, 400.0),))
STOCK = PartStock("bearing-kit", on_hand=5, lead_time_h=48.0)
NIGHTS = tuple(Window(f"night-{d}", 24.0 * d + 20.0, 24.0 * d + 28.0, "planned-stop") for d in range(10))


def at_risk(p50: float = 60.0, p10: float = 40.0, p90: float = 90.0) -> Asset:
    return Asset("pump-1", "pump", fit_failure(p50, p10, p90), stops=("line-A",))


def problem(*assets: Asset, **kw: object) -> MaintenanceProblem:
    base: dict[str, object] = {
        "now": 0.0, "horizon_h": 240.0, "assets": assets, "tasks": (BEARING,), "technicians": (ANA,),
        "parts": (STOCK,), "windows": NIGHTS, "stop_costs": {"line-A": 800.0}, "churn_penalty": 300.0,
    }
    base.update(kw)
    return MaintenanceProblem(**base)  # type: ignore[arg-type]


def only(plan: MaintenancePlan, asset: str) -> PlannedWorkOrder:
    orders = [w for w in plan.work_orders if w.asset == asset]
    assert len(orders) == 1, plan
    return orders[0]


def test_high_risk_asset_gets_work_before_p10_in_the_earliest_cheap_window() -> None:
    asset = at_risk()
    plan = plan_maintenance(problem(asset))
    wo = only(plan, "pump-1")
    assert wo.start == 20.0 and wo.window == "night-0"
    assert asset.failure is not None and wo.end <= asset.failure.quantile(0.1)
    assert wo.crew == ("ana",) and wo.lost_production == 0.0
    assert 0.0 < wo.prob_fail_before < 0.1
    assert wo.parts[0].part == "bearing-kit" and wo.parts[0].source == "stock"
    assert plan.status == "optimal"
    assert plan.total_expected_cost < plan.all_run_to_failure_cost
    options = wo.rationale.options
    assert options[0].label == "run to failure" and options[0].expected_cost > wo.expected_cost
    assert sum(o.chosen for o in options) == 1
    assert {o.window for o in options if o.start is not None} >= {"night-0", "night-1"}  # later windows weighed
    assert "cheapest option" in wo.rationale.summary


def test_healthy_asset_gets_no_work() -> None:
    plan = plan_maintenance(problem(at_risk(3000.0, 2000.0, 4500.0)))
    assert plan.work_orders == ()
    (idle,) = plan.run_to_failure
    assert idle.asset == "pump-1" and idle.prob_fail_in_horizon < 0.01
    assert idle.rationale.summary.startswith("Run to failure")
    assert plan.total_expected_cost == pytest.approx(idle.expected_cost)


def test_costlier_downtime_makes_work_worthwhile() -> None:
    moderate = replace(at_risk(400.0, 250.0, 600.0), stops=())
    cheap = plan_maintenance(problem(moderate))
    assert cheap.work_orders == ()
    critical = replace(moderate, stops=("line-A",))
    costly = plan_maintenance(problem(critical, stop_costs={"line-A": 2000.0}))
    assert downtime_rate(problem(critical, stop_costs={"line-A": 2000.0}), "pump-1") == 2000.0
    wo = only(costly, "pump-1")
    assert wo.window == "night-0"


def test_costlier_downtime_goes_first_when_one_technician_serves_two_assets() -> None:
    a = replace(at_risk(), id="pump-a", stops=())
    b = replace(at_risk(), id="pump-b", stops=("line-A",))
    nights_only = Technician("ana", ("mech",), tuple(Interval(24.0 * d + 20.0, 24.0 * d + 24.0) for d in range(10)))
    plan = plan_maintenance(problem(a, b, technicians=(nights_only,), stop_costs={"line-A": 3000.0}))
    wa, wb = only(plan, "pump-a"), only(plan, "pump-b")
    assert wb.start == 20.0
    assert wa.start >= wb.end


def test_two_assets_needing_the_single_technician_are_sequenced() -> None:
    a = replace(at_risk(), id="pump-a")
    b = replace(at_risk(), id="pump-b")
    plan = plan_maintenance(problem(a, b))
    wa, wb = only(plan, "pump-a"), only(plan, "pump-b")
    assert wa.crew == wb.crew == ("ana",)
    first, second = sorted((wa, wb), key=lambda w: w.start)
    assert first.start == 20.0 and second.start == 24.0  # back to back in the same night
    assert second.start >= first.end
    # a third needing her in the same night is sequenced too, and the rationale says who held her
    c = replace(at_risk(), id="pump-c")
    plan3 = plan_maintenance(problem(a, b, c))
    spans = sorted((w.start, w.end) for w in plan3.work_orders)
    assert all(e1 <= s2 for (_, e1), (s2, _) in itertools.pairwise(spans))
    late = max(plan3.work_orders, key=lambda w: w.start)
    assert "ana busy on" in late.rationale.summary


def test_part_lead_time_delays_work_until_it_arrives() -> None:
    none_in_stock = PartStock("bearing-kit", on_hand=0, lead_time_h=30.0)
    plan = plan_maintenance(problem(at_risk(), parts=(none_in_stock,)))
    wo = only(plan, "pump-1")
    assert wo.start == 30.0  # as soon as the part is there: waiting for night-1 would risk more
    (line,) = wo.parts
    assert line.source == "order" and line.available_at == 30.0
    assert "not possible" in " ".join(o.note for o in wo.rationale.options)
    # one kit in stock for two assets: the second waits for the order
    one = PartStock("bearing-kit", on_hand=1, lead_time_h=30.0)
    plan2 = plan_maintenance(problem(replace(at_risk(), id="pump-a"), replace(at_risk(), id="pump-b"), parts=(one,)))
    starts = sorted(w.start for w in plan2.work_orders)
    assert starts[0] == 20.0 and starts[1] >= 30.0
    assert sorted(w.parts[0].source for w in plan2.work_orders) == ["order", "stock"]


def test_shifts_bound_when_work_can_start() -> None:
    late_shift = Technician("ben", ("mech",), (Interval(40.0, 60.0), Interval(64.0, 90.0)))
    plan = plan_maintenance(problem(at_risk(), technicians=(late_shift,)))
    wo = only(plan, "pump-1")
    assert wo.crew == ("ben",)
    assert wo.start == 44.0  # night-1 (44–52 h) inside ben's shift (40–60 h): the first start both allow


def test_replanning_keeps_firm_orders_and_moves_others_only_for_a_real_gain() -> None:
    a = replace(at_risk(), id="pump-a")
    first = plan_maintenance(problem(a))
    wa = only(first, "pump-a")
    existing = (ExistingOrder("wo-a", "pump-a", "bearing", wa.start, wa.crew, firm=True),
                ExistingOrder("wo-b", "pump-b", "bearing", 68.0, ("ana",), firm=False))  # from an earlier plan
    # a is healthy now, but its order is firm; b got a little worse: night-0 would gain less than the penalty
    a2 = replace(a, failure=fit_failure(5000.0, 4000.0, 6000.0))
    b2 = Asset("pump-b", "pump", fit_failure(150.0, 100.0, 220.0), stops=("line-A",))
    second = plan_maintenance(problem(a2, b2, existing=existing))
    ka, kb = only(second, "pump-a"), only(second, "pump-b")
    assert ka.firm and ka.start == wa.start and ka.crew == wa.crew and ka.order_id == "wo-a"
    assert not kb.firm and kb.start == 68.0 and kb.order_id == "wo-b"
    assert kb.churn_cost == 0.0 and "Keeps the previous plan's start" in kb.rationale.summary
    # without the churn penalty the same small gain is taken: b moves to the first free slot after a's firm work
    free = plan_maintenance(problem(a2, b2, existing=existing, churn_penalty=0.0))
    assert only(free, "pump-b").start == 24.0
    # b much worse: the gain beats the penalty; it moves, pays the churn, and leaves a's firm slot alone
    b3 = replace(b2, failure=fit_failure(90.0, 60.0, 130.0))
    third = plan_maintenance(problem(a2, b3, existing=existing))
    mb = only(third, "pump-b")
    assert mb.start == 24.0 and mb.churn_cost == 300.0 and mb.order_id == "wo-b"
    assert "Moved from 68 h" in mb.rationale.summary
    assert only(third, "pump-a").start == wa.start


def test_solvers_agree_on_a_generated_plant_and_respect_every_constraint() -> None:
    pr = generate_problem(20, days=7, seed=3)
    prep = prepare(pr)
    results = {name: solve(prep, name, 20.0) for name in ("highs", "cpsat", "greedy")}
    for r in results.values():
        assert violations(prep, r.chosen) == []
    assert results["highs"].status == results["cpsat"].status == "optimal"
    assert results["highs"].objective == pytest.approx(results["cpsat"].objective, rel=1e-4)
    assert results["greedy"].objective >= results["highs"].objective - 1e-6
    plan = plan_maintenance(pr, allow_partial=True)
    busy: dict[str, list[tuple[float, float]]] = {}
    for wo in plan.work_orders:
        for t in wo.crew:
            for s, e in busy.get(t, []):
                assert wo.end <= s + 1e-9 or e <= wo.start + 1e-9
            busy.setdefault(t, []).append((wo.start, wo.end))
        model = next(a.model for a in pr.assets if a.id == wo.asset)
        task = next(t for t in pr.tasks if t.name == wo.task and t.model == model)
        assert len(set(wo.crew)) == len(task.skills)
        for role, tech in zip(task.skills, wo.crew, strict=True):
            assert role in next(t for t in pr.technicians if t.id == tech).skills
            assert any(sh.start <= wo.start and wo.end <= sh.end
                       for sh in next(t for t in pr.technicians if t.id == tech).shifts)


def test_proposals_are_plain_json_ready_dicts() -> None:
    firm = ExistingOrder("wo-9", "pump-9", "bearing", 44.0, ("ana",), firm=True)
    pr = problem(at_risk(), replace(at_risk(3000.0, 2000.0, 4500.0), id="pump-9"), existing=(firm,),
                 epoch=datetime(2026, 3, 2))
    plan = plan_maintenance(pr)
    proposals = to_proposals(plan, pr)
    assert len(proposals) == 1  # the firm order is kept, not proposed again
    (p,) = proposals
    json.dumps(proposals)
    assert p["status"] == "proposed" and p["asset"] == "pump-1" and p["crew"] == ["ana"]
    assert p["start_at"] == "2026-03-02T20:00:00" and p["end_at"] == "2026-03-03T00:00:00"
    for key in ("task", "start", "end", "parts", "expected_cost", "prob_fail_before", "rationale", "window"):
        assert key in p
    assert p["rationale"]["options"][0]["label"] == "run to failure"


def test_missing_skill_is_reported_naming_skill_and_asset() -> None:
    hydraulic = replace(BEARING, skills=("hydraulic",))
    with pytest.raises(MaintenanceInfeasible) as err:
        plan_maintenance(problem(at_risk(), tasks=(hydraulic,)))
    (c,) = err.value.fields["conflicts"]
    assert c["kind"] == "missing-skill" and c["asset"] == "pump-1" and c["subject"] == "hydraulic"
    assert "hydraulic" in err.value.message and err.value.status == 409
    partial = plan_maintenance(problem(at_risk(), tasks=(hydraulic,)), allow_partial=True)
    assert partial.work_orders == () and partial.conflicts[0].kind == "missing-skill"
    assert "hydraulic" in (partial.run_to_failure[0].blocked or "")
    # a healthy asset needs no work, so the same gap is only a warning
    calm = plan_maintenance(problem(at_risk(3000.0, 2000.0, 4500.0), tasks=(hydraulic,)))
    assert calm.conflicts == () and "hydraulic" in calm.warnings[0]


def test_part_that_cannot_arrive_in_the_horizon_is_reported() -> None:
    never = PartStock("bearing-kit", on_hand=0, lead_time_h=500.0)
    with pytest.raises(MaintenanceInfeasible) as err:
        plan_maintenance(problem(at_risk(), parts=(never,)))
    (c,) = err.value.fields["conflicts"]
    assert c["kind"] == "part-unavailable" and c["subject"] == "bearing-kit" and "500" in c["message"]


def test_window_in_the_past_is_reported() -> None:
    old = Window("last-week", -100.0, -92.0)
    with pytest.raises(MaintenanceInfeasible, match="last-week"):
        plan_maintenance(problem(at_risk(), windows=(old, *NIGHTS)))
    plan = plan_maintenance(problem(at_risk(), windows=(old, *NIGHTS)), allow_partial=True)
    assert [c.kind for c in plan.conflicts] == ["window-in-past"] and len(plan.work_orders) == 1


def test_firm_orders_that_clash_are_reported_even_for_partial_plans() -> None:
    clash = (ExistingOrder("wo-1", "pump-a", "bearing", 20.0, ("ana",), firm=True),
             ExistingOrder("wo-2", "pump-b", "bearing", 22.0, ("ana",), firm=True))
    assets = (replace(at_risk(), id="pump-a"), replace(at_risk(), id="pump-b"))
    for partial in (False, True):
        with pytest.raises(MaintenanceInfeasible) as err:
            plan_maintenance(problem(*assets, existing=clash), allow_partial=partial)
        (c,) = err.value.fields["conflicts"]
        assert c["kind"] == "firm-overlap" and "wo-1" in c["message"] and "ana" in c["message"]


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        ({"horizon_h": 0.0}, "horizon_h"),
        ({"step_h": float("nan")}, "step_h"),
        ({"tasks": (replace(BEARING, duration_h=-1.0),)}, "duration_h"),
        ({"tasks": (replace(BEARING, skills=()),)}, "skill"),
        ({"tasks": (replace(BEARING, parts=(PartNeed("seal", 1),)),)}, "seal"),
        ({"windows": (Window("w", 30.0, 20.0),)}, "window w"),
        ({"technicians": (ANA, ANA)}, "duplicate technician"),
        ({"stop_costs": {"line-A": -5.0}}, "stop_costs"),
        ({"existing": (ExistingOrder("x", "pump-1", "bearing", 10.0, ("zed",)),)}, "zed"),
        ({"parts": (PartStock("bearing-kit", -1, 10.0),)}, "on_hand"),
    ],
)
def test_bad_input_raises_invalid_naming_what_is_wrong(change: dict[str, object], needle: str) -> None:
    with pytest.raises(Invalid) as err:
        plan_maintenance(problem(at_risk(), **change))
    assert needle in err.value.message
    assert err.value.status == 422


def test_unknown_stop_target_and_solver_are_refused() -> None:
    with pytest.raises(Invalid, match="line-Z"):
        plan_maintenance(problem(replace(at_risk(), stops=("line-Z",))))
    with pytest.raises(Invalid, match="unknown solver"):
        plan_maintenance(problem(at_risk()), solver="gurobi")


def test_a_time_limit_too_short_to_prove_anything_still_returns_a_valid_plan_no_worse_than_greedy() -> None:
    prep = prepare(generate_problem(20, days=7, seed=5))
    greedy = solve(prep, "greedy", 1.0)
    for name in ("highs", "cpsat"):
        r = solve(prep, name, 1e-3)
        assert violations(prep, r.chosen) == []
        assert r.objective <= greedy.objective + 1e-6
    with pytest.raises(Invalid, match="time_limit_s"):
        solve(prep, "highs", 0.0)


def test_proposals_take_the_epoch_from_the_plan() -> None:
    plan = plan_maintenance(problem(at_risk(), epoch=datetime(2026, 3, 2, 6, 0)))
    (p,) = to_proposals(plan)
    assert p["start_at"] == "2026-03-03T02:00:00" and p["duration_h"] == 4.0
