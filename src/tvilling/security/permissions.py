"""Who may do what: the rights of each role, and what every route of the HTTP API needs.

Roles are ordered, each including the rights of the ones before it:

========  ====================================================================================
viewer    read twins, models, history, commands, alarms, work orders, plans, analytics, streams;
          see and end their own dashboard session
operator  + execute: send commands, acknowledge/clear/shelve alarms, move work orders
engineer  + write: twins, models, telemetry, analytics, simulations, scenarios, planning
admin     + everything: API tokens, dead letters, the audit log, history retention
========  ====================================================================================

:data:`ROUTES` declares, for every route of the app (method and path template; WebSocket routes
under the method ``WEBSOCKET``), the :class:`Need` it has, or :data:`PUBLIC`. A route missing from it
is a failing test (``tests/security/test_permissions_routes.py``), so no route can forget it.

>>> allows(("operator",), ROUTES[("POST", "/api/twins/{twin_id}/commands/{name}")])
True
>>> allows(("viewer",), ROUTES[("DELETE", "/api/twins/{twin_id}")])
False
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

ROLES = ("viewer", "operator", "engineer", "admin")
ACTIONS = ("read", "write", "execute", "admin")


@dataclass(frozen=True, slots=True)
class Need:
    """What a route needs: an ``action`` on a ``resource``; ``twin`` names the path parameter holding the
    twin it addresses (checked against a token's twins pattern), if any."""

    action: str
    resource: str
    twin: str | None = None

    @property
    def public(self) -> bool:
        """Whether anyone may call the route, signed in or not."""
        return self.action == "public"


PUBLIC = Need("public", "public")

#: What each role's rights add to the previous role's (see :func:`rights`).
_VIEWER = {("read", r) for r in ("twins", "models", "history", "commands", "alarms", "workorders", "planning",
                                 "analytics", "simulations", "scenarios", "streams", "system")}
_VIEWER |= {("read", "session"), ("write", "session")}  # see who one is signed in as, and sign out
_OPERATOR = {("execute", r) for r in ("commands", "alarms", "workorders")}
_ENGINEER = {("write", r) for r in ("twins", "models", "telemetry", "analytics", "simulations", "scenarios",
                                    "planning", "workorders")}


def rights(role: str) -> frozenset[tuple[str, str]] | None:
    """The (action, resource) pairs ``role`` may do; None for ``admin`` (everything); empty for an unknown role."""
    if role == "admin":
        return None
    granted: set[tuple[str, str]] = set()
    for level, added in zip(ROLES[:3], (_VIEWER, _OPERATOR, _ENGINEER), strict=True):
        granted |= added
        if role == level:
            return frozenset(granted)
    return frozenset()


_RIGHTS = {role: rights(role) for role in ROLES}


def allows(roles: Iterable[str], need: Need) -> bool:
    """Whether any of ``roles`` grants ``need`` (a public route is allowed to everyone)."""
    if need.public:
        return True
    for role in roles:
        if role not in _RIGHTS:
            continue
        granted = _RIGHTS[role]
        if granted is None or (need.action, need.resource) in granted:
            return True
    return False


def _twin(action: str, resource: str) -> Need:
    return Need(action, resource, twin="twin_id")


R, W, X, A = "read", "write", "execute", "admin"

#: Every route of the app and what it needs. List and query routes (``/api/query``, ``/api/events``,
#: ``/api/stream``, ``/api/ws``, ``/api/commands``, ``/api/alarms``…) are allowed by role only.
#: Their results are filtered by the caller's twins pattern and policies (:mod:`tvilling.security.enforce`).
ROUTES: dict[tuple[str, str], Need] = {
    # public: liveness, the dashboard's static files, the API documentation
    ("GET", "/health"): PUBLIC,
    ("GET", "/openapi.json"): PUBLIC,
    ("GET", "/docs"): PUBLIC,
    ("GET", "/docs/oauth2-redirect"): PUBLIC,
    ("GET", "/"): PUBLIC,
    ("GET", "/ui/vendor/{name}"): PUBLIC,
    ("GET", "/ui/{rel:path}"): PUBLIC,
    # the dashboard's sign-in (tvilling.api.auth): the flow itself is public, a session is not
    ("GET", "/auth/login"): PUBLIC,
    ("GET", "/auth/callback"): PUBLIC,
    ("GET", "/auth/session"): Need(R, "session"),
    ("POST", "/auth/logout"): Need(W, "session"),
    # models
    ("POST", "/api/models"): Need(W, "models"),
    ("GET", "/api/models"): Need(R, "models"),
    ("GET", "/api/models/{dtmi}"): Need(R, "models"),
    ("POST", "/api/models/{dtmi}/decommission"): Need(W, "models"),
    # twins
    ("PUT", "/api/twins/{twin_id}"): _twin(W, "twins"),
    ("GET", "/api/twins/{twin_id}"): _twin(R, "twins"),
    ("PATCH", "/api/twins/{twin_id}"): _twin(W, "twins"),
    ("DELETE", "/api/twins/{twin_id}"): _twin(W, "twins"),
    ("POST", "/api/twins/{twin_id}/migrate"): _twin(W, "twins"),
    ("GET", "/api/twins/{twin_id}/events"): _twin(R, "twins"),
    ("PUT", "/api/twins/{twin_id}/relationships/{rel_id}"): _twin(W, "twins"),
    ("GET", "/api/twins/{twin_id}/relationships"): _twin(R, "twins"),
    ("GET", "/api/twins/{twin_id}/relationships/{rel_id}"): _twin(R, "twins"),
    ("DELETE", "/api/twins/{twin_id}/relationships/{rel_id}"): _twin(W, "twins"),
    ("POST", "/api/query"): Need(R, "twins"),
    ("GET", "/api/events"): Need(R, "twins"),
    ("GET", "/api/health"): Need(R, "system"),
    # telemetry and history
    ("POST", "/api/ingest"): Need(W, "telemetry"),
    ("GET", "/api/dead-letters"): Need(A, "dead_letters"),
    ("GET", "/api/twins/{twin_id}/history"): _twin(R, "history"),
    ("PUT", "/api/history/retention"): Need(A, "history"),
    ("GET", "/api/history/retention"): Need(R, "history"),
    # commands
    ("POST", "/api/twins/{twin_id}/commands/{name}"): _twin(X, "commands"),
    ("GET", "/api/twins/{twin_id}/commands"): _twin(R, "commands"),
    ("GET", "/api/commands/{command_id}"): Need(R, "commands"),
    ("GET", "/api/commands"): Need(R, "commands"),
    # alarms
    ("GET", "/api/alarms"): Need(R, "alarms"),
    ("POST", "/api/alarms/shelves"): Need(X, "alarms"),
    ("GET", "/api/alarms/shelves"): Need(R, "alarms"),
    ("POST", "/api/alarms/shelves/{shelf_id}/end"): Need(X, "alarms"),
    ("GET", "/api/alarms/{alarm_id}"): Need(R, "alarms"),
    ("POST", "/api/alarms/{alarm_id}/ack"): Need(X, "alarms"),
    ("POST", "/api/alarms/{alarm_id}/clear"): Need(X, "alarms"),
    # change streams
    ("GET", "/api/stream"): Need(R, "streams"),
    ("WEBSOCKET", "/api/ws"): Need(R, "streams"),
    # analytics
    ("GET", "/api/analytics"): Need(R, "analytics"),
    ("GET", "/api/analytics/{name}"): Need(R, "analytics"),
    ("POST", "/api/analytics/{name}/train"): Need(W, "analytics"),
    ("POST", "/api/analytics/{name}/versions/{version}/backtest"): Need(W, "analytics"),
    ("POST", "/api/analytics/{name}/versions/{version}/promote"): Need(W, "analytics"),
    ("POST", "/api/analytics/reset"): Need(W, "analytics"),
    ("GET", "/api/twins/{twin_id}/forecast"): _twin(R, "analytics"),
    # what-if scenarios and simulations
    ("POST", "/api/scenarios"): Need(W, "scenarios"),
    ("GET", "/api/scenarios"): Need(R, "scenarios"),
    ("GET", "/api/scenarios/vocabulary"): Need(R, "scenarios"),
    ("GET", "/api/scenarios/compare"): Need(R, "scenarios"),
    ("GET", "/api/scenarios/{scenario_id}/score"): Need(R, "scenarios"),
    ("GET", "/api/scenarios/{scenario_id}"): Need(R, "scenarios"),
    ("POST", "/api/simulations/{name}/calibrations"): Need(W, "simulations"),
    ("GET", "/api/simulations/{name}/versions"): Need(R, "simulations"),
    ("POST", "/api/simulations/{name}/versions/{version}/promote"): Need(W, "simulations"),
    # maintenance: work orders, planning, decisions
    ("POST", "/api/workorders"): Need(W, "workorders"),
    ("GET", "/api/workorders"): Need(R, "workorders"),
    ("GET", "/api/workorders/{workorder_id}"): Need(R, "workorders"),
    ("POST", "/api/workorders/{workorder_id}/approve"): Need(X, "workorders"),
    ("POST", "/api/workorders/{workorder_id}/schedule"): Need(X, "workorders"),
    ("POST", "/api/workorders/{workorder_id}/start"): Need(X, "workorders"),
    ("POST", "/api/workorders/{workorder_id}/done"): Need(X, "workorders"),
    ("POST", "/api/workorders/{workorder_id}/cancel"): Need(X, "workorders"),
    ("GET", "/api/twins/{twin_id}/maintenance"): _twin(R, "workorders"),
    ("POST", "/api/maintenance/plan"): Need(W, "planning"),
    ("GET", "/api/maintenance/config"): Need(R, "planning"),
    ("GET", "/api/decisions"): Need(R, "planning"),
    ("GET", "/api/decisions/{decision_id}"): Need(R, "planning"),
    ("POST", "/api/decisions"): Need(W, "planning"),
    ("POST", "/api/decisions/{decision_id}/approve"): Need(X, "workorders"),
    # production planning
    ("POST", "/api/production/orders"): Need(W, "planning"),
    ("GET", "/api/production/orders"): Need(R, "planning"),
    ("GET", "/api/production/orders/{order_id}"): Need(R, "planning"),
    ("POST", "/api/production/orders/{order_id}/cancel"): Need(W, "planning"),
    ("POST", "/api/production/plans"): Need(W, "planning"),
    ("POST", "/api/production/plans/replan"): Need(W, "planning"),
    ("GET", "/api/production/plans/current"): Need(R, "planning"),
    ("GET", "/api/production/plans"): Need(R, "planning"),
    ("GET", "/api/production/plans/{plan_id}"): Need(R, "planning"),
    ("GET", "/api/production/compare"): Need(R, "planning"),
    ("GET", "/api/production/dispatch"): Need(R, "planning"),
    # security: API tokens and the audit log
    ("POST", "/api/tokens"): Need(A, "tokens"),
    ("GET", "/api/tokens"): Need(A, "tokens"),
    ("DELETE", "/api/tokens/{token_id}"): Need(A, "tokens"),
    ("GET", "/api/audit"): Need(A, "audit"),
    ("GET", "/api/audit/verify"): Need(A, "audit"),
    # security: authorisation policies (tvilling.security.policies)
    ("GET", "/api/policies"): Need(A, "policies"),
    ("GET", "/api/policies/{policy_id}"): Need(A, "policies"),
    ("PUT", "/api/policies/{policy_id}"): Need(A, "policies"),
    ("DELETE", "/api/policies/{policy_id}"): Need(A, "policies"),
}


def declared(method: str, path: str) -> Need | None:
    """The need of the route ``method path`` (a path template; ``HEAD`` as ``GET``), or None if undeclared."""
    return ROUTES.get(("GET" if method == "HEAD" else method, path))


__all__ = ["ACTIONS", "PUBLIC", "ROLES", "ROUTES", "Need", "allows", "declared", "rights"]
