"""``tvilling production …``: production orders, the plan of a line, re-plans on events (here, or through a
running server with --server).

``orders add|list|cancel``, ``plan [--line L] [--time-limit S]``, ``show`` (a text Gantt chart per machine
and the KPIs), ``replan --reason …`` (the KPI deltas and the operations that moved).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import click

from tvilling.cli.common import emit, errors, opened_platform, server_option, store_options

DEFAULT_LINE = "line-1"
_RELATIVE = re.compile(r"\+(\d+(?:\.\d+)?)([mhd])")


class _Remote:
    """The routes of a running server."""

    def __init__(self, server: str) -> None:
        from tvilling.connect.replay import Server

        self.client = Server(server)

    def _call(self, method: str, path: str, body: Any = None) -> Any:
        return self.client.request(method, path, body)[1]

    def add_order(self, body: dict[str, Any], actor: str) -> Any:
        return self._call("POST", "/api/production/orders", body)

    def orders(self, line: str | None, state: str | None) -> Any:
        query = urlencode({k: v for k, v in (("line", line), ("state", state), ("limit", 1000)) if v is not None})
        return self._call("GET", f"/api/production/orders?{query}")["items"]

    def cancel(self, order_id: str) -> Any:
        return self._call("POST", f"/api/production/orders/{quote(order_id, safe='')}/cancel")

    def plan(self, body: dict[str, Any]) -> Any:
        return self._call("POST", "/api/production/plans", body)

    def replan(self, body: dict[str, Any]) -> Any:
        return self._call("POST", "/api/production/plans/replan", body)

    def show(self, line: str, plan_id: str | None) -> Any:
        if plan_id is not None:
            return self._call("GET", f"/api/production/plans/{quote(plan_id, safe='')}")
        return self._call("GET", f"/api/production/plans/current?{urlencode({'line': line})}")


class _Local:
    """The same, on the data directory's platform in this process."""

    def __init__(self, platform: Any) -> None:
        from tvilling.planning.production_service import ProductionService

        self.svc = ProductionService(platform)

    def add_order(self, body: dict[str, Any], actor: str) -> Any:
        return self.svc.create_order(body, actor).to_json()

    def orders(self, line: str | None, state: str | None) -> Any:
        return [o.to_json() for o in self.svc.list_orders(line=line, state=state, limit=1000)]

    def cancel(self, order_id: str) -> Any:
        return self.svc.cancel_order(order_id).to_json()

    def plan(self, body: dict[str, Any]) -> Any:
        return _answer(self.svc.plan(body["line"], time_limit=body.get("time_limit")))

    def replan(self, body: dict[str, Any]) -> Any:
        return _answer(self.svc.replan(body["line"], body["reason"], body["event"],
                                       time_limit=body.get("time_limit")))

    def show(self, line: str, plan_id: str | None) -> Any:
        from tvilling.core.errors import NotFound
        from tvilling.planning.production_json import plan_to_json

        plan = self.svc.get_plan(plan_id) if plan_id is not None else self.svc.current(line)
        if plan is None:
            raise NotFound(f"line {line!r} has no production plan yet; `tvilling production plan` makes one",
                           line=line)
        return plan_to_json(plan)


def _answer(result: Any) -> dict[str, Any]:
    from tvilling.planning.production_json import plan_to_json

    return {"plan": plan_to_json(result.plan), "comparison": result.comparison, "solver": result.solver}


@contextmanager
def _api(data_dir: Path | None, store: str | None, config_file: str | None,
         server: str | None) -> Iterator[_Remote | _Local]:
    """The server's routes with --server, else the data directory's platform; errors as ``error: …``, exit 1."""
    with errors():
        if server is not None:
            remote = _Remote(server)
            try:
                yield remote
            finally:
                remote.client.close()
            return
        with opened_platform(data_dir, store, config_file) as platform:
            yield _Local(platform)


def _when(text: str | None, what: str) -> str | None:
    """An ISO time, or ``+90m`` / ``+4h`` / ``+2d`` from now."""
    if text is None:
        return None
    m = _RELATIVE.fullmatch(text.strip())
    if m is None:
        return text
    unit = {"m": "minutes", "h": "hours", "d": "days"}[m.group(2)]
    ts = datetime.now(UTC) + timedelta(**{unit: float(m.group(1))})
    return ts.isoformat().replace("+00:00", "Z")


def _routing(steps: tuple[str, ...], count: int | None) -> list[list[str]]:
    if steps:
        return [[] if s.strip() in ("*", "") else [m.strip() for m in s.split(",") if m.strip()] for s in steps]
    return [[] for _ in range(count or 1)]


def _store_server(fn: Any) -> Any:
    return store_options(server_option(fn))


@click.group("production")
def production_group() -> None:
    """Production orders and schedules of a line (CP-SAT), re-planned around maintenance and breakdowns."""


@production_group.group("orders")
def orders_group() -> None:
    """Production orders."""


@orders_group.command("add")
@_store_server
@click.option("--line", default=DEFAULT_LINE, show_default=True, help="The line twin.")
@click.option("--product", required=True)
@click.option("--quantity", type=int, required=True, help="Parts to make.")
@click.option("--step", "steps", multiple=True, metavar="M1,M2|*",
              help="A routing step (repeatable, in order): the machines that may run it, or * for any of the line.")
@click.option("--steps", "count", type=int, default=None, help="Without --step: this many steps, any machine each.")
@click.option("--due", required=True, help="Due time: ISO 8601, or +90m / +4h / +2d from now.")
@click.option("--release", default=None, help="Not before this time (ISO 8601 or +30m); default now.")
@click.option("--priority", type=int, default=1, show_default=True, help="Weight of its lateness (1-1000).")
@click.option("--id", "order_id", default=None, help="The order's id (default: one is made).")
@click.option("--actor", default="cli", show_default=True, envvar="TVILLING_ACTOR")
def orders_add(data_dir: Path | None, store: str | None, config_file: str | None, server: str | None, line: str,
               product: str, quantity: int, steps: tuple[str, ...], count: int | None, due: str, release: str | None,
               priority: int, order_id: str | None, actor: str) -> None:
    """Add a production order to a line."""
    body: dict[str, Any] = {"line": line, "product": product, "quantity": quantity,
                            "routing": _routing(steps, count), "due": _when(due, "due"), "priority": priority}
    if release is not None:
        body["release"] = _when(release, "release")
    if order_id is not None:
        body["id"] = order_id
    with _api(data_dir, store, config_file, server) as api:
        order = api.add_order(body, actor)
    click.echo(_order_line(order))


@orders_group.command("list")
@_store_server
@click.option("--line", default=None, help="Only this line's.")
@click.option("--state", default=None, help="open, done or cancelled.")
@click.option("--json", "as_json", is_flag=True)
def orders_list(data_dir: Path | None, store: str | None, config_file: str | None, server: str | None,
                line: str | None, state: str | None, as_json: bool) -> None:
    """The production orders, in the order they were created."""
    with _api(data_dir, store, config_file, server) as api:
        items = api.orders(line, state)
    if as_json:
        emit(items)
        return
    for order in items:
        click.echo(_order_line(order))


@orders_group.command("cancel")
@_store_server
@click.argument("order_id")
def orders_cancel(data_dir: Path | None, store: str | None, config_file: str | None, server: str | None,
                  order_id: str) -> None:
    """Cancel an open order."""
    with _api(data_dir, store, config_file, server) as api:
        order = api.cancel(order_id)
    click.echo(_order_line(order))


@production_group.command("plan")
@_store_server
@click.option("--line", default=DEFAULT_LINE, show_default=True, help="The line twin.")
@click.option("--time-limit", type=float, default=None, help="Solver seconds (default: the setting, 5).")
@click.option("--json", "as_json", is_flag=True, help="Print the answer as JSON.")
def plan_cmd(data_dir: Path | None, store: str | None, config_file: str | None, server: str | None, line: str,
             time_limit: float | None, as_json: bool) -> None:
    """Plan LINE now: its open orders on its machines, around maintenance and faults."""
    body: dict[str, Any] = {"line": line}
    if time_limit is not None:
        body["time_limit"] = time_limit
    with _api(data_dir, store, config_file, server) as api:
        answer = api.plan(body)
    _print_answer(answer, as_json)


@production_group.command("show")
@_store_server
@click.option("--line", default=DEFAULT_LINE, show_default=True, help="The line whose plan in force to show.")
@click.option("--plan", "plan_id", default=None, help="Show this plan instead.")
@click.option("--width", type=click.IntRange(20, 400), default=72, show_default=True, help="Chart width.")
@click.option("--json", "as_json", is_flag=True)
def show_cmd(data_dir: Path | None, store: str | None, config_file: str | None, server: str | None, line: str,
             plan_id: str | None, width: int, as_json: bool) -> None:
    """The plan in force of LINE (or --plan ID): a Gantt chart per machine, downtimes, KPIs."""
    from tvilling.planning.production_text import show

    with _api(data_dir, store, config_file, server) as api:
        plan = api.show(line, plan_id)
    if as_json:
        emit(plan)
    else:
        click.echo(show(plan, width))


@production_group.command("replan")
@_store_server
@click.option("--line", default=DEFAULT_LINE, show_default=True)
@click.option("--reason", required=True, type=click.Choice(["maintenance inserted", "machine slowed", "breakdown"]))
@click.option("--machine", default=None, help="The machine the event is on.")
@click.option("--work-order", default=None, help="maintenance inserted: the work order.")
@click.option("--start", default=None, help="maintenance / breakdown start (ISO 8601 or +30m).")
@click.option("--end", default=None, help="maintenance end (ISO 8601 or +2h).")
@click.option("--speed", type=float, default=None, help="machine slowed: the new speed, rpm.")
@click.option("--repair-h", type=float, default=None, help="breakdown: estimated hours to repair.")
@click.option("--time-limit", type=float, default=None)
@click.option("--json", "as_json", is_flag=True)
def replan_cmd(data_dir: Path | None, store: str | None, config_file: str | None, server: str | None, line: str,
               reason: str, machine: str | None, work_order: str | None, start: str | None, end: str | None,
               speed: float | None, repair_h: float | None, time_limit: float | None, as_json: bool) -> None:
    """Re-plan LINE after an event; prints each KPI before, after and the delta, and what moved."""
    event = {k: v for k, v in (("machine", machine), ("work_order", work_order), ("start", _when(start, "start")),
                               ("end", _when(end, "end")), ("speed_rpm", speed), ("repair_h", repair_h))
             if v is not None}
    body: dict[str, Any] = {"line": line, "reason": reason, "event": event}
    if time_limit is not None:
        body["time_limit"] = time_limit
    with _api(data_dir, store, config_file, server) as api:
        answer = api.replan(body)
    _print_answer(answer, as_json)


def _print_answer(answer: dict[str, Any], as_json: bool) -> None:
    from tvilling.planning.production_text import comparison_table, show

    if as_json:
        emit(answer)
        return
    click.echo(show(answer["plan"]))
    solver = answer.get("solver") or {}
    click.echo(f"  solver: {solver.get('status')} in {solver.get('seconds')} s")
    if answer.get("comparison"):
        click.echo(comparison_table(answer["comparison"]))


def _order_line(o: dict[str, Any]) -> str:
    route = " > ".join(",".join(step) or "*" for step in o["routing"])
    return (f"{o['id']}  {o['state']:<9} {o['line']}  {o['product']} x{o['quantity']}  due {o['due']}  "
            f"priority {o['priority']}  route {route}")


__all__ = ["production_group"]
