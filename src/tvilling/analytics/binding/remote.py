"""Analytics work done by a running server (``tvilling analytics train|backtest --server URL``): the twins
chosen through its query API, the run through ``POST /api/analytics/{name}/{action}``."""

from __future__ import annotations

import urllib.parse
from collections.abc import Iterator
from typing import Any, Protocol

from tvilling.analytics.binding.choose import PAGE


class Api(Protocol):
    """A server's HTTP API as :class:`tvilling.connect.replay.Server` speaks it."""

    def request(self, method: str, path: str, body: Any = None, /) -> tuple[int, Any]:
        """``(status, JSON answer)``; problems are raised as Tvilling errors."""


def _quoted(name: str) -> str:
    return urllib.parse.quote(name, safe="")


def remote_model(api: Api, name: str) -> str:
    """The model (DTMI) of the server's analytic ``name``."""
    model: str = api.request("GET", f"/api/analytics/{_quoted(name)}")[1]["model"]
    return model


def remote_model_pages(api: Api, model: str) -> Iterator[list[str]]:
    """The ids of every twin of ``model`` on the server, a page at a time."""
    doc: dict[str, Any] = {"model": model, "limit": PAGE}
    while True:
        page = api.request("POST", "/api/query", doc)[1]
        yield [t["id"] for t in page["items"]]
        if page.get("next") is None:
            return
        doc = {**doc, "cursor": page["next"]}


def figures_first(answer: Any) -> Any:
    """A backtest report with its per-twin detail last (after the figures); anything else unchanged."""
    if isinstance(answer, dict) and "per_twin" in answer:
        return {k: v for k, v in answer.items() if k != "per_twin"} | {"per_twin": answer["per_twin"]}
    return answer


def remote_run(api: Api, name: str, action: str, twins: list[str], body: dict[str, Any]) -> Any:
    """``POST /api/analytics/{name}/{action}`` on ``twins`` with ``body``; the answer, figures first."""
    return figures_first(api.request("POST", f"/api/analytics/{_quoted(name)}/{action}", {"twins": twins, **body})[1])
