"""Maintenance resets: once an asset is maintained (bearings replaced, faults repaired) its analytics learn afresh.

What an analytic learned of the old part no longer describes the asset: a detector's baseline was
the worn bearing's, a remaining-life trend extrapolates a degradation the repair removed. A reset
(:meth:`AnalyticsEngine.reset <tvilling.analytics.binding.engine.AnalyticsEngine.reset>`, called when
a work order is done or through ``POST /api/analytics/reset``) starts every analytic bound to the
twin again as at first start:

* per-twin analytics (detectors, ``rul-trend``): the promoted version is retired in the registry,
  so nothing is loaded for the twin — after a restart either — and the twin learns a new version
  from its first ``train_rows`` rows after the reset, registered and promoted as at first start;
* fleet analytics (``rul-fleet``): the fleet version stays; the twin's cycle count and window start
  again (a fresh runner is seeded from history after the reset only);
* the engine's state of the twin (runner, filled-forward row, marker, failure) is dropped; rows at
  or before the newest row analysed before the reset are never learned from;
* the twin shows it: the analytics' outputs are removed (``anomaly_score``, ``anomaly``, ``rul``,
  ``health``… are null, as before the first learning) and the marker ``analytics.<name>`` says
  ``status: "learning"`` and keeps ``reset: {at, reason, by, after, retired_version}`` — one
  ``TwinPatched`` event on the change feed, and rows in history. The status turns ``running`` when
  the analytic runs again.

Alarms: given the alarm service, a reset clears the open alarms of the reset twins whose property it
withdrew (a remaining life, an anomaly score), noting the maintenance: the evidence they stood on described
the replaced part, and a new part's trend may report no remaining life at all for a while (null), which no
rule could clear. Afterwards the rules apply as ever to what the relearned analytics report.

An asset's maintenance covers the asset and the twins its outgoing relationships point to, one level
deep (its parts: a machine's ``hasBearing`` and ``hasSpindle`` targets), or only those of the named
relationships.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from tvilling.analytics.binding.outputs import LEARNING, MARKER, Key
from tvilling.analytics.binding.spec import AnalyticSpec
from tvilling.core.errors import Invalid, NotFound
from tvilling.core.readings import Readings

if TYPE_CHECKING:
    from tvilling.analytics.binding.engine import AnalyticsEngine
    from tvilling.analytics.binding.step import AnalyticsState
    from tvilling.twins.service import TwinService

RESET = "reset"  # the key of the marker holding the last reset
MAX_REASON = 500
MAX_TWINS = 1000
# what an analytic's marker says about itself that the reset voids (null removes it from the twin)
_VOIDED = ("version", "scoring", "trend", "fault_confidence", "drift")


@dataclass(frozen=True)
class Reset:
    """One analytic reset on one twin: the registry version retired (per-twin analytics) and the data time
    of the newest row analysed before (``None``: the analytic had not analysed the twin yet)."""

    analytic: str
    twin: str
    retired: int | None
    after_us: int | None

    def to_json(self) -> dict[str, Any]:
        return {"analytic": self.analytic, "twin": self.twin, "retired_version": self.retired,
                "after": None if self.after_us is None else iso_us(self.after_us)}


def iso_us(ts_us: int) -> str:
    """A data time in µs as ISO 8601 UTC (``Z``), to the microsecond."""
    return datetime.fromtimestamp(ts_us / 1e6, UTC).isoformat().replace("+00:00", "Z")


def to_us(when: datetime) -> int:
    """A datetime (naive: UTC) in µs since the epoch, exactly."""
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    delta = when - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def parse_us(text: Any) -> int | None:
    """The data time in µs of an ISO 8601 text written by :func:`iso_us`, or None.

    >>> parse_us(iso_us(1_767_225_600_123_456))
    1767225600123456
    """
    if not isinstance(text, str):
        return None
    try:
        return to_us(datetime.fromisoformat(text.replace("Z", "+00:00")))
    except ValueError:
        return None


def check_reason(reason: Any) -> str:
    """A reset's reason: a non-empty text of at most :data:`MAX_REASON` characters."""
    if not isinstance(reason, str) or not reason.strip():
        raise Invalid("reason must be a non-empty text (what was done to the asset)", field="reason",
                      rule="required")
    if len(reason) > MAX_REASON:
        raise Invalid(f"reason is {len(reason)} characters long; at most {MAX_REASON}", field="reason",
                      rule="length")
    return reason.strip()


def forget(state: AnalyticsState, key: Key) -> int | None:
    """Drop what ``state`` holds of ``key`` (runner, filled-forward row, marker, failure) and remember where
    its history was cut; returns that data time (the newest row analysed), or None."""
    for table in (state.runners, state.last, state.markers, state.failures):
        table.pop(key, None)
    state.unavailable.discard(key)
    after = state.seen.get(key, state.resets.get(key))
    if after is not None:
        state.resets[key] = after
    return after


def reset_after(marker: Any, analytic: str) -> int | None:
    """The data time a twin's ``analytics`` marker records for the last reset of ``analytic``, or None."""
    said = marker.get(analytic) if isinstance(marker, Mapping) else None
    reset = said.get(RESET) if isinstance(said, Mapping) else None
    return parse_us(reset.get("after")) if isinstance(reset, Mapping) else None


def reset_outputs(resets: Sequence[Reset], specs: Mapping[str, AnalyticSpec], *, reason: str, at: datetime,
                  by: str) -> tuple[Readings, npt.NDArray[np.object_]] | None:
    """What a reset writes on each twin: the analytics' outputs removed (null) and a marker per analytic saying
    it learns again, at the data time just after the newest row analysed (else ``at``); with the source of each."""
    rows: list[tuple[str, str, int, Any]] = []
    sources: list[str] = []
    by_twin: dict[str, list[Reset]] = {}
    for r in resets:
        by_twin.setdefault(r.twin, []).append(r)
    at_us = to_us(at)
    for twin, items in by_twin.items():
        seen = [r.after_us for r in items if r.after_us is not None]
        ts = max(seen) + 1 if seen else at_us
        marker: dict[str, Any] = {}
        written: set[str] = set()
        for r in items:
            spec = specs[r.analytic]
            for name in spec.outputs:
                if name not in written:
                    written.add(name)
                    rows.append((twin, name, ts, None))
                    sources.append(f"analytics:{spec.name}@reset")
            said: dict[str, Any] = dict.fromkeys(_VOIDED)
            said.update(status=LEARNING, time=iso_us(ts))
            said[RESET] = {"at": iso_us(at_us), "reason": reason, "by": by, "retired_version": r.retired,
                           "after": None if r.after_us is None else iso_us(r.after_us)}
            marker[spec.name] = said
        rows.append((twin, MARKER, ts, marker))
        sources.append(MARKER)
    if not rows:
        return None
    return Readings.from_rows(rows), np.asarray(sources, dtype=object)


def maintained_twins(twins: TwinService, asset: str, relationships: Collection[str] | None = None) -> list[str]:
    """``asset`` and the twins its outgoing relationships point to (only those named ``relationships``, when
    given), one level deep, each once; ``NotFound`` naming the asset when it is not a twin."""
    twin = twins.get(asset)
    out = [twin.id]
    for rel in twin.relationships.values():
        if (relationships is None or rel.name in relationships) and rel.target not in out:
            out.append(rel.target)
    return out


OPEN_ALARM = frozenset({"active", "acknowledged"})  # the alarm states a maintenance may clear


class MaintenanceReset:
    """Resets the analytics of a maintained asset and of its parts: what a done work order calls.

    ``MaintenanceReset(platform.analytics, platform.twins)("line-1-m01", reason="replaced both bearings")``
    resets the machine's analytics and its bearings' and spindle's.
    """

    def __init__(self, engine: AnalyticsEngine, twins: TwinService, *,
                 relationships: Collection[str] | None = None, alarms: Any = None) -> None:
        self.engine = engine
        self.twins = twins
        self.relationships = None if relationships is None else frozenset(relationships)
        self.alarms = alarms  # an AlarmService: open alarms on a property the reset withdrew are cleared

    def __call__(self, asset: str, *, reason: str, at: datetime | None = None, by: str = "analytics",
                 parts: bool = True) -> dict[str, Any]:
        """Reset ``asset`` (and its parts unless ``parts`` is false); returns what was reset."""
        return self.reset(self.targets([asset], parts=parts), reason=reason, at=at, by=by)

    def targets(self, assets: Sequence[str], *, parts: bool = True) -> list[str]:
        """The twins a maintenance of ``assets`` covers, each once; ``NotFound`` naming an asset that is no twin."""
        if len(assets) > MAX_TWINS:
            raise Invalid(f"at most {MAX_TWINS} twins at a time; got {len(assets)}", field="twins", rule="count")
        out: list[str] = []
        for asset in assets:
            found = maintained_twins(self.twins, asset, self.relationships) if parts else [self.twins.get(asset).id]
            out.extend(t for t in found if t not in out)
        return out

    def reset(self, twin_ids: Sequence[str], *, reason: str, at: datetime | None = None,
              by: str = "analytics") -> dict[str, Any]:
        """Reset the analytics bound to each of ``twin_ids``; ``NotFound`` naming the first that is not a twin."""
        reason = check_reason(reason)
        if not twin_ids:
            raise Invalid("name at least one twin to reset", field="twins", rule="required")
        if len(twin_ids) > MAX_TWINS:
            raise Invalid(f"at most {MAX_TWINS} twins at a time; got {len(twin_ids)}", field="twins", rule="count")
        found = self.twins.store.get_many(list(dict.fromkeys(twin_ids)))
        missing = [t for t in twin_ids if t not in found]
        if missing:
            raise NotFound(f"twin {missing[0]!r} does not exist", twin=missing[0], field="twins")
        when = at or datetime.now(UTC)
        done = self.engine.reset({t: found[t].model for t in dict.fromkeys(twin_ids)}, reason=reason, at=when, by=by)
        return {"twins": list(dict.fromkeys(twin_ids)), "at": iso_us(to_us(when)), "reason": reason,
                "analytics": [r.to_json() for r in done],
                "alarms_cleared": self._clear_withdrawn(list(dict.fromkeys(twin_ids)), reason, when)}

    def _clear_withdrawn(self, twin_ids: Sequence[str], reason: str, when: datetime) -> list[str]:
        """Clear the open alarms of ``twin_ids`` raised on a property the reset removed (a remaining life, a
        score): the evidence they stood on is gone with the part it described, and a new part's analytics may
        report nothing for a while (no degradation trend: no remaining life), which no rule would clear."""
        if self.alarms is None:
            return []
        now = self.twins.store.get_many(list(twin_ids))
        cleared: list[str] = []
        for twin_id in twin_ids:
            twin = now.get(twin_id)
            if twin is None:
                continue
            for alarm in self.alarms.list(twin=twin_id, limit=1000):
                withdrawn = _reported(twin.reported, alarm.property) is None
                if alarm.state in OPEN_ALARM and alarm.source is None and withdrawn:
                    note = f"maintenance: {reason} (the analytics' {alarm.property} was reset)"
                    done = self.alarms.resolve(twin=twin_id, rule=alarm.rule, now=when, note=note)
                    if done is not None:
                        cleared.append(done.id)
        return cleared


def _reported(reported: Mapping[str, Any], path: str) -> Any:
    """The value at ``path`` (a key, or dotted keys into nested objects) of a twin's reported state, else None."""
    if path in reported:
        return reported[path]
    node: Any = reported
    for key in path.split("."):
        if not isinstance(node, Mapping) or key not in node:
            return None
        node = node[key]
    return node


def maintenance_reset(platform: Any, alarms: Any = None) -> MaintenanceReset | None:
    """The reset a platform's work orders call when done (``alarms``: the alarm service whose alarms on withdrawn
    properties it clears); ``None`` when the platform configures no analytics."""
    if not platform.settings.analytics:
        return None
    return MaintenanceReset(platform.analytics, platform.twins, alarms=alarms)


__all__ = ["MAX_REASON", "RESET", "MaintenanceReset", "Reset", "check_reason", "forget", "iso_us",
           "maintained_twins", "maintenance_reset", "parse_us", "reset_after", "reset_outputs", "to_us"]
