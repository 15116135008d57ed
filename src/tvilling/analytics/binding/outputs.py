"""What one analytics step produces: derived readings with their sources, and requests for the shell.

:func:`tvilling.analytics.binding.step.process` fills an :class:`Outputs`; it performs no I/O
itself. What it cannot do without a store it asks for:

* :class:`Fitted` — "register this fitted version" (a per-twin analytic just learned its model);
  the version number is the registry's to give, so the outputs of that analytic on that twin
  carry no number until :meth:`Outputs.settle` gives them one (or :meth:`Outputs.drop` removes them,
  when another version was promoted meanwhile);
* :class:`Drifted` — "annotate the version in use with this drift report" (drifting started or ended);
* :class:`Failed` — an analytic raised on a twin (the first time with this message): log it.

:meth:`Outputs.derived` assembles the readings to write and the source of each: numeric columns
(every row, for history), then text values, then one ``analytics`` marker per twin merging what
each analytic that ran on it says (version, time, scoring, drift…).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from tvilling.analytics.binding.runners import Output
from tvilling.core.readings import Readings

Key = tuple[str, str]  # (analytic name, twin id)
MARKER = "analytics"  # the property holding each analytic's marker
UNREGISTERED = "new"  # how a source names a fitted version the registry has not numbered (yet)
RUNNING, LEARNING = "running", "learning"  # an analytic's status in its marker (learning: after a maintenance reset)


@dataclass(frozen=True)
class Fitted:
    """Request: register the version an analytic just fitted for ``scope`` (``artifact`` as stored bytes)."""

    key: Key
    analytic: str
    scope: str
    artifact: bytes
    fingerprint: str
    params: dict[str, Any]
    metrics: dict[str, Any]


@dataclass(frozen=True)
class Drifted:
    """Request: keep ``report`` with the version in use (``version`` None: the one ``key`` just fitted)."""

    key: Key
    analytic: str
    scope: str
    version: int | None
    report: dict[str, Any]


@dataclass(frozen=True)
class Failed:
    """An analytic raised on a twin; ``why`` is also kept in the state's failures."""

    key: Key
    why: str
    error: BaseException


@dataclass
class _Part:
    twin: str
    analytic: str
    version: int | None
    items: list[Output]
    marker: tuple[int, dict[str, Any]] | None


@dataclass
class Outputs:
    """The outputs of one step, per (analytic, twin), plus the requests the shell carries out."""

    fitted: list[Fitted] = field(default_factory=list)
    drifted: list[Drifted] = field(default_factory=list)
    failed: list[Failed] = field(default_factory=list)
    _parts: dict[Key, _Part] = field(default_factory=dict)

    def add(self, key: Key, version: int | None, items: list[Output],
            marker: tuple[int, dict[str, Any]] | None) -> None:
        """Record what analytic ``key[0]`` (at ``version``) derived for twin ``key[1]``."""
        self._parts[key] = _Part(key[1], key[0], version, items, marker)

    def keys(self) -> list[Key]:
        """The (analytic, twin) pairs that produced outputs, in the order they ran."""
        return list(self._parts)

    def settle(self, key: Key, version: int) -> None:
        """Give the outputs of a just-registered version their number (sources and marker)."""
        part = self._parts.get(key)
        if part is None:
            return
        part.version = version
        if part.marker is not None:
            part.marker[1]["version"] = version

    def drop(self, key: Key) -> None:
        """Forget the outputs of ``key`` (its fitted version was not the one promoted)."""
        self._parts.pop(key, None)

    def derived(self) -> tuple[Readings, npt.NDArray[np.object_]] | None:
        """The readings to write and the source of each (``analytics:<name>@<version>``), or None."""
        parts: list[Readings] = []
        sources: list[npt.NDArray[np.object_]] = []
        text_rows: list[tuple[str, str, int, Any]] = []
        text_sources: list[str] = []
        markers: dict[str, tuple[int, dict[str, Any]]] = {}
        for part in self._parts.values():
            source = f"analytics:{part.analytic}@{UNREGISTERED if part.version is None else part.version}"
            twin = part.twin
            for name, ts, value in part.items:
                if isinstance(ts, np.ndarray):  # a numeric column
                    n = ts.size
                    parts.append(Readings(np.full(n, twin, dtype=object), np.full(n, name, dtype=object),
                                          ts.astype(np.int64), np.asarray(value, dtype=np.float64)))
                    sources.append(np.full(n, source, dtype=object))
                else:
                    text_rows.append((twin, name, ts, value))
                    text_sources.append(source)
            if part.marker is not None:  # one marker row per twin, naming every analytic that ran
                ts_m, said = part.marker
                at, merged = markers.get(twin, (ts_m, {}))
                markers[twin] = (max(at, ts_m), {**merged, part.analytic: said})
        for twin, (ts_m, merged) in markers.items():
            text_rows.append((twin, MARKER, ts_m, merged))
            text_sources.append(MARKER)
        if text_rows:
            parts.append(Readings.from_rows(text_rows))
            sources.append(np.asarray(text_sources, dtype=object))
        if not parts:
            return None
        return Readings.concat(parts), np.concatenate(sources)
