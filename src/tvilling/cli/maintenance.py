"""``tvilling maintenance …``: work orders through a running server (``--server``, env ``TVILLING_URL``).

``list``, ``show``, ``propose``, ``approve``, ``schedule``, ``start``, ``done``, ``cancel``, a twin's
``record``, and ``plan``: proposals from the maintenance optimiser (``tvilling.planning.maintenance``,
when installed) or from a file, submitted as proposed work orders. Completion goes through the server
because it sends the asset its maintenance command over the server's device links.
"""

from __future__ import annotations

import importlib
import json
import os
import urllib.error
import urllib.parse
import urllib.request
from typing import Any
from urllib.parse import quote, urlencode

import click

from tvilling.cli.common import emit, errors, json_arg
from tvilling.core.errors import (
    Conflict,
    Invalid,
    Malformed,
    NotFound,
    PreconditionFailed,
    TooLarge,
    TvillingError,
    Unavailable,
)

DEFAULT_SERVER = "http://127.0.0.1:8000"
_ERRORS: dict[int, type[TvillingError]] = {400: Malformed, 404: NotFound, 409: Conflict, 412: PreconditionFailed,
                                           413: TooLarge, 422: Invalid, 503: Unavailable}
#: The optimiser's entry point this command calls when it is installed: ``plan_proposals(problem) -> [proposal]``.
PLANNER_MODULE, PLANNER_FUNCTION = "tvilling.planning.maintenance", "plan_proposals"


class Client:
    """JSON over HTTP to a ``tvilling serve``, acting as ``actor`` (the ``X-Tvilling-Actor`` header), or, where
    the environment variable ``TVILLING_TOKEN`` holds an API token, as that token's identity."""

    def __init__(self, server: str, actor: str, timeout: float = 60.0) -> None:
        parts = urllib.parse.urlsplit(server if "://" in server else f"http://{server}")
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise Invalid(f"{server!r} is not a server address; use http://HOST:PORT", field="server", rule="format")
        self.base = f"{parts.scheme}://{parts.netloc}"
        self.actor = actor
        self.timeout = timeout

    def call(self, method: str, path: str, body: Any = None) -> Any:
        """The answer's JSON; a problem answer raises the error of its status with the server's detail."""
        data = None if body is None else json.dumps(body).encode()
        headers = {"content-type": "application/json", "accept": "application/json", "x-tvilling-actor": self.actor}
        token = os.environ.get("TVILLING_TOKEN", "").strip()
        if token:  # a server with auth required: the token's identity acts, not the actor named above
            headers["authorization"] = f"Bearer {token}"
        request = urllib.request.Request(f"{self.base}{path}", data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as answer:
                raw = answer.read()
        except urllib.error.HTTPError as exc:
            raw = exc.read()
            try:
                problem = json.loads(raw)
            except json.JSONDecodeError:
                problem = {"detail": raw.decode("utf-8", "replace")[:300]}
            detail = problem.get("detail", problem) if isinstance(problem, dict) else problem
            fields = {k: v for k, v in problem.items() if k not in ("type", "title", "status", "detail")} \
                if isinstance(problem, dict) else {}
            raise _ERRORS.get(exc.code, TvillingError)(f"{detail} (HTTP {exc.code})", **fields) from None
        except (urllib.error.URLError, OSError) as exc:
            raise Unavailable(f"cannot reach the server at {self.base} ({exc}); is `tvilling serve` running there? "
                              "(--server or TVILLING_URL)", server=self.base) from None
        return json.loads(raw) if raw else None


def _options(fn: Any) -> Any:
    fn = click.option("--actor", default="cli", show_default=True, envvar="TVILLING_ACTOR",
                      help="Who acts (recorded as the order's creator or approver).")(fn)
    return click.option("--server", default=DEFAULT_SERVER, show_default=True, metavar="URL", envvar="TVILLING_URL",
                        help="The running `tvilling serve` (env TVILLING_URL).")(fn)


def _parts(items: tuple[str, ...]) -> dict[str, int]:
    out: dict[str, int] = {}
    for item in items:
        number, sep, qty = item.rpartition("=")
        if not sep or not number or not qty.isdigit() or int(qty) < 1:
            raise click.BadParameter(f"{item!r}: give a part as PART_NUMBER=QUANTITY (e.g. 6205-2RS=2)",
                                     param_hint="--part")
        out[number] = out.get(number, 0) + int(qty)
    return out


def _line(order: dict[str, Any]) -> str:
    crew = ",".join(order.get("crew") or []) or "-"
    parts = ",".join(f"{p}x{q}" for p, q in (order.get("parts") or {}).items()) or "-"
    firm = " firm" if order.get("firm") else ""
    return (f"{order['id']}  {order['state']:<11} {order['asset']}  {order['task']}  {order['planned_start']} → "
            f"{order['planned_end']}  crew {crew}  parts {parts}  v{order['version']}{firm}")


def _show(order: dict[str, Any]) -> None:
    click.echo(_line(order))
    for key in ("expected_cost", "failure_probability", "created_by", "approved_by", "actual_start", "actual_end"):
        if order.get(key) is not None:
            click.echo(f"  {key}: {order[key]}")
    for h in order.get("history") or []:
        note = f"  ({h['note']})" if h.get("note") else ""
        click.echo(f"  {h['at']}  {h.get('previous') or '-'} → {h['to']}  by {h['by']}{note}")
    command = (order.get("completion") or {}).get("command")
    if command:
        if command.get("sent"):
            click.echo(f"  maintenance command {command['name']}: {command.get('status')} "
                       f"(command {command.get('id')})")
        else:
            click.echo(f"  maintenance command {command.get('name')} not sent: {command.get('reason')}")
    if order.get("rationale"):
        click.echo(f"  rationale: {json.dumps(order['rationale'], sort_keys=True)[:500]}")


@click.group("maintenance")
def maintenance_group() -> None:
    """Maintenance work orders: plan, list, show, approve, schedule, start, done, cancel; a twin's record."""


@maintenance_group.command("list")
@_options
@click.option("--state", type=click.Choice(["proposed", "approved", "scheduled", "in_progress", "done", "cancelled"]),
              default=None)
@click.option("--asset", default=None, help="Only this twin's.")
@click.option("--from", "start", default=None, help="Only orders whose window ends after this ISO time.")
@click.option("--to", "end", default=None, help="Only orders whose window starts before this ISO time.")
@click.option("--limit", type=click.IntRange(1, 1000), default=100, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print the orders as JSON.")
def maintenance_list(server: str, actor: str, state: str | None, asset: str | None, start: str | None,
                     end: str | None, limit: int, as_json: bool) -> None:
    """Work orders by planned start."""
    query = {k: v for k, v in (("state", state), ("asset", asset), ("start", start), ("end", end)) if v is not None}
    with errors():
        items = Client(server, actor).call("GET", f"/api/workorders?{urlencode({**query, 'limit': limit})}")["items"]
    if as_json:
        emit(items)
        return
    for order in items:
        click.echo(_line(order))
    if not items:
        click.echo("no work orders", err=True)


@maintenance_group.command("show")
@_options
@click.argument("order_id", metavar="ID")
@click.option("--json", "as_json", is_flag=True, help="Print the whole order as JSON.")
def maintenance_show(server: str, actor: str, order_id: str, as_json: bool) -> None:
    """One work order with its history and what completing it did."""
    with errors():
        order = Client(server, actor).call("GET", f"/api/workorders/{quote(order_id, safe='')}")
    emit(order) if as_json else _show(order)


@maintenance_group.command("propose")
@_options
@click.option("--asset", required=True, help="The twin the work is on.")
@click.option("--task", required=True, help="The task, e.g. replace-bearing.")
@click.option("--start", required=True, help="Planned start, ISO time with zone (2026-03-03T06:00:00Z).")
@click.option("--end", required=True, help="Planned end, ISO time with zone.")
@click.option("--crew", default=None, help="Technician ids separated by commas.")
@click.option("--part", "parts", multiple=True, metavar="PN=QTY", help="A spare part (repeatable).")
@click.option("--cost", type=float, default=None, help="Expected cost.")
@click.option("--note", default=None)
@click.option("--firm", is_flag=True, help="A re-plan must keep it in place.")
@click.option("--id", "order_id", default=None, help="The order's id (default: one is made).")
def maintenance_propose(server: str, actor: str, asset: str, task: str, start: str, end: str, crew: str | None,
                        parts: tuple[str, ...], cost: float | None, note: str | None, firm: bool,
                        order_id: str | None) -> None:
    """Propose a work order by hand."""
    body: dict[str, Any] = {"asset": asset, "task": task, "planned_start": start, "planned_end": end,
                            "crew": [c.strip() for c in crew.split(",") if c.strip()] if crew else [],
                            "parts": _parts(parts), "firm": firm}
    body.update({k: v for k, v in (("expected_cost", cost), ("notes", note), ("id", order_id)) if v is not None})
    with errors():
        order = Client(server, actor).call("POST", "/api/workorders", body)
    click.echo(_line(order))


def _move(action: str, server: str, actor: str, order_id: str, body: dict[str, Any]) -> None:
    with errors():
        order = Client(server, actor).call("POST", f"/api/workorders/{quote(order_id, safe='')}/{action}", body)
    _show(order)


def _common(note: str | None, version: int | None) -> dict[str, Any]:
    return {k: v for k, v in (("note", note), ("version", version)) if v is not None}


_NOTE = click.option("--note", default=None, help="A remark kept with the move.")
_VERSION = click.option("--version", "version", type=click.IntRange(1), default=None,
                        help="Only if the order is still at this version (else 412).")


@maintenance_group.command("approve")
@_options
@click.argument("order_id", metavar="ID")
@_NOTE
@_VERSION
def maintenance_approve(server: str, actor: str, order_id: str, note: str | None, version: int | None) -> None:
    """Approve a proposed work order."""
    _move("approve", server, actor, order_id, _common(note, version))


@maintenance_group.command("schedule")
@_options
@click.argument("order_id", metavar="ID")
@click.option("--start", default=None, help="A new planned start (ISO time).")
@click.option("--end", default=None, help="A new planned end (ISO time).")
@click.option("--crew", default=None, help="The crew, technician ids separated by commas.")
@_NOTE
@_VERSION
def maintenance_schedule(server: str, actor: str, order_id: str, start: str | None, end: str | None,
                         crew: str | None, note: str | None, version: int | None) -> None:
    """Schedule an approved work order (it becomes firm)."""
    body = _common(note, version)
    body.update({k: v for k, v in (("planned_start", start), ("planned_end", end)) if v is not None})
    if crew is not None:
        body["crew"] = [c.strip() for c in crew.split(",") if c.strip()]
    _move("schedule", server, actor, order_id, body)


@maintenance_group.command("start")
@_options
@click.argument("order_id", metavar="ID")
@_NOTE
@_VERSION
def maintenance_start(server: str, actor: str, order_id: str, note: str | None, version: int | None) -> None:
    """Start a scheduled work order."""
    _move("start", server, actor, order_id, _common(note, version))


@maintenance_group.command("done")
@_options
@click.argument("order_id", metavar="ID")
@click.option("--part", "parts", multiple=True, metavar="PN=QTY",
              help="A part actually used (repeatable; replaces the planned parts).")
@_NOTE
@_VERSION
def maintenance_done(server: str, actor: str, order_id: str, parts: tuple[str, ...], note: str | None,
                     version: int | None) -> None:
    """Complete a work order: the server records it and sends the asset its maintenance command."""
    body = _common(note, version)
    if parts:
        body["parts"] = _parts(parts)
    _move("done", server, actor, order_id, body)


@maintenance_group.command("cancel")
@_options
@click.argument("order_id", metavar="ID")
@click.option("--reason", required=True, help="Why (kept as a note).")
@_VERSION
def maintenance_cancel(server: str, actor: str, order_id: str, reason: str, version: int | None) -> None:
    """Cancel a work order that is not done."""
    _move("cancel", server, actor, order_id, _common(reason, version))


@maintenance_group.command("record")
@_options
@click.argument("twin_id", metavar="TWIN")
@click.option("--json", "as_json", is_flag=True, help="Print the record as JSON.")
def maintenance_record(server: str, actor: str, twin_id: str, as_json: bool) -> None:
    """A twin's maintenance record: orders done, parts replaced, operating hours, open orders."""
    with errors():
        record = Client(server, actor).call("GET", f"/api/twins/{quote(twin_id, safe='')}/maintenance")
    if as_json:
        emit(record)
        return
    hours = record["operating_hours_since_maintenance"]
    click.echo(f"{record['twin']}  {record['workorders_done']} work order(s) done  operating hours since "
               f"maintenance: {'-' if hours is None else f'{hours:.1f}'} ({record['operating_hours_source'] or '-'})")
    for part in record["parts_replaced"]:
        click.echo(f"  replaced {part['part']} x{part['quantity']} (last {part['last_replaced']})")
    for item in record["history"]:
        click.echo(f"  {item['done']}  {item['id']}  {item['task']}")
    for item in record["open_workorders"]:
        click.echo(f"  open: {item['id']} {item['state']} {item['task']} {item['planned_start']}")


@maintenance_group.command("plan")
@_options
@click.option("--horizon", "horizon_h", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Planning horizon in plant hours (default: the server's [maintenance] horizon_h).")
@click.option("--solver", type=click.Choice(["highs", "cpsat"]), default="highs", show_default=True)
@click.option("--time-limit", "time_limit_s", type=click.FloatRange(min=0, max=600, min_open=True), default=10.0,
              show_default=True, help="Solver time limit in seconds.")
@click.option("--asset", "assets", multiple=True, help="Only this twin (repeatable).")
@click.option("--json", "as_json", is_flag=True, help="Print the server's whole answer as JSON.")
@click.option("--problem", default=None, metavar="JSON|@FILE|-",
              help="A planning problem for the local optimiser (tvilling.planning.maintenance), not the server's.")
@click.option("--proposals", default=None, metavar="JSON|@FILE|-",
              help="Work order proposals already made (a JSON list), instead of running the optimiser.")
@click.option("--submit", is_flag=True, help="With --problem/--proposals: store them as proposed work orders.")
def maintenance_plan(server: str, actor: str, horizon_h: float | None, solver: str, time_limit_s: float,
                     assets: tuple[str, ...], as_json: bool, problem: str | None, proposals: str | None,
                     submit: bool) -> None:
    """Plan maintenance on the server from the twins' predicted remaining life (proposed work orders), or from
    --problem / --proposals."""
    if problem is not None and proposals is not None:
        raise click.UsageError("give --problem or --proposals, not both")
    with errors():
        if problem is None and proposals is None:
            body: dict[str, Any] = {"solver": solver, "time_limit_s": time_limit_s}
            if horizon_h is not None:
                body["horizon_h"] = horizon_h
            if assets:
                body["assets"] = list(assets)
            answer = Client(server, actor).call("POST", "/api/maintenance/plan", body)
            if as_json:
                emit(answer)
                return
            for order in answer["proposed"]:
                click.echo(_line(order))
            for idle in answer["run_to_failure"]:
                click.echo(f"run to failure: {idle['asset']}  {idle['why']}")
            totals, solved = answer["totals"], answer["solver"]
            click.echo(f"{len(answer['proposed'])} proposed, {len(answer['kept'])} kept, {len(answer['cancelled'])} "
                       f"cancelled; expected cost {totals['expected_cost']} (all run to failure "
                       f"{totals['all_run_to_failure_cost']}); {solved['name']} {solved['status']}", err=True)
            return
        if proposals is not None:
            items = json_arg(proposals, "--proposals")
        else:
            items = _planner()(json_arg(problem, "--problem"))
        if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
            raise Invalid("the proposals must be a JSON list of work order proposals (objects)", field="proposals")
        if not submit:
            emit(items)
            click.echo(f"{len(items)} proposal(s); --submit stores them as proposed work orders", err=True)
            return
        client = Client(server, actor)
        for item in items:
            click.echo(_line(client.call("POST", "/api/workorders", item)))


def _planner() -> Any:
    """The optimiser's ``plan_proposals``, or a clear error while it is not installed."""
    try:
        module = importlib.import_module(PLANNER_MODULE)
    except ImportError:
        raise Unavailable(f"the maintenance optimiser ({PLANNER_MODULE}) is not installed in this build; give "
                          "--proposals instead", rule="not_installed") from None
    planner = getattr(module, PLANNER_FUNCTION, None)
    if not callable(planner):
        raise Unavailable(f"{PLANNER_MODULE} has no {PLANNER_FUNCTION}(problem) yet; give --proposals instead",
                          rule="not_installed")
    return planner
