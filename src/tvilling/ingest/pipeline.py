"""The ingest pipeline: transport → validate → units → clean → twin state + history, or dead letter.

Order of durability, per batch: dead letters, then one event per twin (its newest values,
with time, source, quality and flags as metadata), then history. Only then do the series
statistics advance and the transport may acknowledge. A crash in between leads to
redelivery, never to loss (at worst the state records the same values twice, or a
reading is stored twice in history).

History's rows may be *written* while the state commits (the embedded store inserts them in
its own thread, without the GIL, inside a transaction), but its transaction *commits* only
after the state's: what is durable is still dead letters, then state, then history.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import threading
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

import msgspec
import numpy as np
import numpy.typing as npt

from tvilling.core.commands import RecordReported
from tvilling.core.envelope import Envelope
from tvilling.core.principal import Principal
from tvilling.core.readings import QUALITY_NAMES, Readings, flag_names
from tvilling.core.twin import Twin
from tvilling.history.base import Staged
from tvilling.history.ports import Point
from tvilling.ingest.clean import NO_TS, CleanSettings, SeriesState, clean, series_ids
from tvilling.ingest.deadletter import DeadLetter, DeadLetterStore
from tvilling.ingest.normalise import SeenIds, letter, normalise, to_us, ts_text
from tvilling.ingest.ports import IngestResult, RawMessage
from tvilling.ingest.specs import BOOLEAN, INTEGER, NUMBER, STRING, Spec, specs_for
from tvilling.models.outputs import OUTPUTS
from tvilling.models.validate import validate_section
from tvilling.twins.service import TwinService

log = logging.getLogger("tvilling.ingest")


class HistoryAppend(Protocol):
    def append(self, readings: Readings, *, message_ids: Sequence[tuple[str, str]] = ()) -> int: ...

    def range(self, twin: str, prop: str, start_us: int, end_us: int, *, limit: int = 1000,
              after_us: int | None = None) -> list[Point]: ...

    def recent_message_ids(self, limit: int) -> list[tuple[str, str]]: ...


class Observer(Protocol):
    """Called after a batch is durably stored, outside the pipeline's lock (analytics hook here).

    ``models`` maps each twin of the batch to its model. An observer must not raise for a
    bad batch of its own making; what it raises is logged and the ingest result stands.
    """

    def __call__(self, readings: Readings, models: Mapping[str, str], transport: str) -> None: ...


@dataclass(frozen=True)
class IngestSettings(CleanSettings):
    dedupe_ids: int = 200_000  # message ids remembered to drop redeliveries


class Pipeline:
    """Synchronous and thread-safe; one batch at a time. Transports use :class:`IngestService`."""

    def __init__(self, twins: TwinService, history: HistoryAppend, dead_letters: DeadLetterStore,
                 settings: IngestSettings | None = None) -> None:
        self.twins = twins
        self.history = history
        self.dead_letters = dead_letters
        self.settings = settings or IngestSettings()
        self.series = SeriesState()
        self.seen = SeenIds(self.settings.dedupe_ids)
        # the ids journaled with history: a message redelivered after a crash is known once its readings are
        self.seen.remember(history.recent_message_ids(self.settings.dedupe_ids))
        self._specs: dict[str, dict[str, Spec]] = {}
        self._lock = threading.Lock()
        self._stale_marked: set[int] = set()
        self.observers: list[Observer] = []
        self.state_hooks: list[Any] = []  # called with each batch right after its state commit (benchmarks)
        self._principals: dict[str, Principal] = {}

    # -- entry points -------------------------------------------------------------------
    def ingest_envelopes(self, envelopes: Sequence[Envelope], *, transport: str = "api",
                         raw: RawMessage | None = None, now: datetime | None = None,
                         origins: Sequence[RawMessage | None] | None = None) -> IngestResult:
        """Validate, clean and store; ``origins`` (one per envelope) are the raw messages they came from.

        Whatever one message does, it cannot fail the rest of its batch: an envelope that makes a
        validation or cleaning step raise is dead-lettered (rule ``internal``, naming the
        exception) with its raw message, and the others are stored. Only a store that fails
        (``Unavailable``) fails the batch, and then nothing of it counts as stored.
        """
        received = now or datetime.now(UTC)
        if origins is not None and len(origins) != len(envelopes):
            raise ValueError("origins must hold one raw message (or None) per envelope")
        try:
            return self._ingest_envelopes(envelopes, transport, raw, received, origins)
        except _Unprocessable as exc:
            return self._isolate(envelopes, transport, raw, received, origins, exc.error)

    def _ingest_envelopes(self, envelopes: Sequence[Envelope], transport: str, raw: RawMessage | None,
                          received: datetime, origins: Sequence[RawMessage | None] | None) -> IngestResult:
        with self._lock:
            snaps = self.twins.store.get_many(sorted({e.twin for e in envelopes}))
            try:
                cols, new_ids = normalise(
                    envelopes, models_of={k: t.model for k, t in snaps.items()}, specs_of=self._specs_of,
                    validate_other=self._validate_other, seen=self.seen, transport=transport, received=received,
                    address=raw.address if raw else None, origins=origins,
                )
                readings, source = cols.readings()
                origin = _Origins(envelopes, origins, np.array(cols.origin, dtype=np.int64),
                                  raw.address if raw else None)
                batch = self._prepare(readings, source, snaps, cols.rejects, cols.duplicates, transport, received,
                                      origin=origin)
            except Exception as exc:  # the pure stages: a hostile message or a bug, not a store
                raise _Unprocessable(exc) from exc
            result, accepted = self._write(batch, transport, new_ids)
            self.seen.remember(new_ids)
        self._notify(accepted, snaps, transport)
        return result

    def _isolate(self, envelopes: Sequence[Envelope], transport: str, raw: RawMessage | None, received: datetime,
                 origins: Sequence[RawMessage | None] | None, error: BaseException) -> IngestResult:
        """Store the batch in halves (by message) until the message that makes a pure stage raise is alone."""
        groups: dict[int, list[int]] = {}
        for i in range(len(envelopes)):
            origin = origins[i] if origins is not None else None
            groups.setdefault(id(origin) if origin is not None else -1 - i, []).append(i)
        parts = list(groups.values())
        if len(parts) == 1:
            log.error("ingest: a message made the pipeline raise %s (%s); dead-lettered", type(error).__name__, error)
            letters = [letter(envelopes[i], origins[i] if origins is not None else None,
                              f"twin {envelopes[i].twin[:80]!r}: unexpected {type(error).__name__} while ingesting "
                              f"the message: {str(error)[:200]}", "internal", transport=transport, received=received,
                              address=raw.address if raw else None, count=max(1, len(envelopes[i].values)))
                       for i in parts[0]]
            self.dead_letters.add(letters)
            return IngestResult(rejected=sum(d.count for d in letters), letters=tuple(letters))
        total = IngestResult()
        half = len(parts) // 2
        for chunk in (parts[:half], parts[half:]):
            idx = sorted(i for part in chunk for i in part)
            res = self.ingest_envelopes([envelopes[i] for i in idx], transport=transport, raw=raw, now=received,
                                        origins=[origins[i] for i in idx] if origins is not None else None)
            total = IngestResult(accepted=total.accepted + res.accepted, rejected=total.rejected + res.rejected,
                                 duplicates=total.duplicates + res.duplicates, flagged=total.flagged + res.flagged,
                                 letters=total.letters + res.letters)
        return total

    def ingest_readings(self, readings: Readings, *, source: str | npt.NDArray[np.object_] | None = None,
                        transport: str = "replay", now: datetime | None = None) -> IngestResult:
        """The columnar fast path (replay, HTTP columnar form): numeric and text readings, validated per series.

        ``source`` is the batch's source, or one per reading (an object array as long as the batch).
        """
        received = now or datetime.now(UTC)
        if isinstance(source, np.ndarray):
            if len(source) != len(readings):
                raise ValueError(f"source holds {len(source)} entries for {len(readings)} readings")
            src = source
        else:
            src = np.full(len(readings), source, dtype=object)
        with self._lock:
            snaps = self.twins.store.get_many(sorted(set(readings.twin.tolist())))
            keep, letters = self._validate_columns(readings, snaps, transport, received)
            if keep is not None:
                readings = readings.take(keep)
                src = src[keep]
            batch = self._prepare(readings, src, snaps, letters, 0, transport, received)
            result, accepted = self._write(batch, transport)
        self._notify(accepted, snaps, transport)
        return result

    def write_derived(self, readings: Readings, *, source: str | npt.NDArray[np.object_], actor: str) -> int:
        """Store values the platform derived itself (analytic outputs): history, then one event per twin.

        They skip the cleaning stage (an anomaly score's jump is the point, not a spike) and
        are not passed to the observers again. Returns how many readings were stored.
        """
        if not len(readings):
            return 0
        with self._lock:
            snaps = self.twins.store.get_many(sorted(set(readings.twin.tolist())))
            self.history.append(readings)
            newest = _newest_per_series(readings)
            src = np.full(len(readings), source, dtype=object) if isinstance(source, str) else source
            self._commit_patches(self._patches(readings, src, newest, snaps), actor, snaps)
        return len(readings)

    def _notify(self, accepted: Readings, snaps: Mapping[str, Twin], transport: str) -> None:
        if not len(accepted) or not self.observers:
            return
        models = {k: t.model for k, t in snaps.items()}
        for observer in self.observers:
            try:
                observer(accepted, models, transport)
            except Exception:  # an observer's failure must not undo or fail a stored batch
                log.exception("ingest observer %r failed on a batch of %d readings", observer, len(accepted))

    def reject(self, raw: RawMessage, reason: str, rule: str = "translate") -> None:
        self.dead_letters.add([DeadLetter.of(raw.payload, transport=raw.transport, address=raw.address, rule=rule,
                                             reason=reason, received=raw.received)])

    def check_stale(self, now: datetime | None = None) -> int:
        """Mark the properties whose series fell silent (quality 'uncertain', 'stale': true); returns how many."""
        now_us = to_us(now or datetime.now(UTC))
        with self._lock:
            last = self.series.last_ts
            limit = np.maximum(self.settings.stale_after_s * 1e6, self.settings.stale_factor * self.series.gap)
            silent = np.flatnonzero((last != NO_TS) & (now_us - last > limit))
            fresh = [i for i in silent.tolist() if i not in self._stale_marked]
            self._stale_marked = {i for i in self._stale_marked if last[i] != NO_TS and now_us - last[i] > limit[i]}
            if not fresh:
                return 0
            keys = list(self.series.index)
            per_twin: dict[str, dict[str, Any]] = defaultdict(dict)
            for i in fresh:
                twin, prop = keys[i]
                per_twin[twin][prop] = {"time": ts_text(int(last[i])), "quality": "uncertain", "stale": True,
                                        "silent_s": round((now_us - int(last[i])) / 1e6, 1)}
            self._commit_patches({t: ({}, {"reported": m}) for t, m in per_twin.items()}, "ingest:stale")
            self._stale_marked.update(fresh)
            return len(fresh)

    # -- stages --------------------------------------------------------------------------
    def _prepare(self, readings: Readings, source: npt.NDArray[np.object_], snaps: Mapping[str, Twin],
                 letters: list[DeadLetter], duplicates: int, transport: str, received: datetime,
                 origin: _Origins | None = None) -> _Prepared:
        """The pure part of storing a batch: clean it and build its dead letters and state patches."""
        seed = self.series.seed_new(lambda t, p: _seed(snaps.get(t), p))
        sid = self.series.ids(readings.twin, readings.prop)
        seed()
        cleaned = clean(readings, sid, self.series, to_us(received), self.settings,
                        in_history=lambda rows: self._in_history(readings, rows))
        for rows, reason, rule in cleaned.rejected:
            if origin is not None:
                letters.extend(origin.letters(readings, rows, reason, rule, transport, received))
            else:
                letters.extend(_group_letters(readings, rows, reason, rule, transport, received))
        accepted = cleaned.readings
        patches = self._patches(accepted, source[cleaned.keep], cleaned.newest, snaps) if len(accepted) else {}
        return _Prepared(accepted, patches, snaps, letters, duplicates, cleaned)

    def _in_history(self, r: Readings, rows: npt.NDArray[np.int64]) -> npt.NDArray[np.bool_]:
        """Whether history holds these readings (rare: only a reading equal to a restart's seeded point)."""
        held = np.zeros(len(rows), dtype=bool)
        for k, i in enumerate(rows.tolist()):
            ts = int(r.ts[i])
            text = r.text[i] if r.text is not None else None
            held[k] = any(p.ts_us == ts and p.text == text and (p.value == r.value[i] or text is not None)
                          for p in self.history.range(r.twin[i], r.prop[i], ts, ts + 1, limit=100))
        return held

    def _write(self, batch: _Prepared, transport: str,
               message_ids: Sequence[tuple[str, str]] = ()) -> tuple[IngestResult, Readings]:
        """Dead letters, then the twins' state (what live readers wait for), then history; the batch counts
        as stored, and the transport acknowledges it, only after all three (a crash in between means
        redelivery: the state gets the same values again, history gets them for the first time).
        History's append is staged first, so that a store able to write the rows during the state
        commit does; it commits after the state, or is aborted if the state commit fails."""
        if batch.letters:
            self.dead_letters.add(batch.letters)
        accepted, cleaned = batch.accepted, batch.cleaned
        staged = self._stage(accepted, message_ids) if len(accepted) or message_ids else None
        try:
            if len(accepted):
                self._commit_patches(batch.patches, f"ingest:{transport}", batch.snaps)
                for hook in self.state_hooks:  # (a hook must not read history: its append holds the store)
                    hook(accepted)
        except BaseException:
            if staged is not None:
                staged.abort()
            raise
        if staged is not None:
            staged.commit()  # history's transaction commits only now, after the state's (the ids with it)
        cleaned.commit_state()
        self._stale_marked.difference_update(np.unique(cleaned.sid).tolist())
        return IngestResult(accepted=len(accepted), rejected=sum(d.count for d in batch.letters),
                            duplicates=batch.duplicates + cleaned.duplicates, flagged=cleaned.flagged,
                            letters=tuple(batch.letters)), accepted

    def _stage(self, accepted: Readings, message_ids: Sequence[tuple[str, str]]) -> Staged:
        """History's append of the batch, begun before the state commit where the store can (it writes the
        rows in its own thread meanwhile), committed after it; else the whole append at commit."""
        stage = getattr(self.history, "stage", None)
        if stage is not None:
            staged: Staged = stage(accepted, message_ids=message_ids)
            return staged
        return Staged(lambda: self.history.append(accepted, message_ids=message_ids))

    def _patches(self, r: Readings, source: npt.NDArray[np.object_], newest: npt.NDArray[np.bool_],
                 snaps: Mapping[str, Twin]) -> dict[str, tuple[dict[str, Any], dict[str, Any]]]:
        out: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {}
        for i in np.flatnonzero(newest).tolist():
            twin, path = r.twin[i], r.prop[i]
            snap = snaps.get(twin)
            if snap is None:
                continue
            spec = self._specs_of(snap.model).get(path)
            text = r.text[i] if r.text is not None else None
            value: Any = json.loads(text) if text is not None else float(r.value[i])
            if spec is not None and spec.kind == INTEGER and isinstance(value, float):
                value = int(value)
            reported, meta = out.setdefault(twin, ({}, {"reported": {}}))
            _set_path(reported, path, value)
            stamp: dict[str, Any] = {"time": ts_text(int(r.ts[i])), "quality": QUALITY_NAMES[int(r.quality[i])]}
            if source[i] is not None:
                stamp["source"] = source[i]
            if r.flags[i]:
                stamp["flags"] = flag_names(int(r.flags[i]))
            meta["reported"][path] = stamp
        return out

    def _commit_patches(self, patches: Mapping[str, tuple[dict[str, Any], dict[str, Any]]], actor: str,
                        snaps: Mapping[str, Twin] | None = None) -> None:
        """One event per twin, through the twin service's one write path (``snaps``: the batch's twins, just read)."""
        commands = [RecordReported(twin=twin_id, reported=reported, metadata=meta)
                    for twin_id, (reported, meta) in patches.items()]
        if commands:
            self.twins.execute(commands, self._principal(actor), known=snaps, states=False)

    def _principal(self, actor: str) -> Principal:
        principal = self._principals.get(actor)
        if principal is None:
            principal = self._principals[actor] = Principal.system(actor)
        return principal

    def _validate_columns(self, r: Readings, snaps: Mapping[str, Twin], transport: str,
                          received: datetime) -> tuple[npt.NDArray[np.int64] | None, list[DeadLetter]]:
        """Check each series of the batch once (rows grouped by series); returns rows to keep or None.

        Series get the pipeline's ids only once they pass, so unknown twins and properties never
        take a place in its per-series state.
        """
        letters: list[DeadLetter] = []
        keep = np.ones(len(r), dtype=bool)
        if not len(r):
            return None, letters
        sid = series_ids(r.twin, r.prop, {})  # local ids: a series joins the state only once it passes
        first = np.unique(sid, return_index=True)[1]
        order = np.argsort(sid, kind="stable")
        bounds = np.searchsorted(sid[order], sid[first])
        ends = np.append(bounds[1:], len(order))
        for f, lo, hi in zip(first.tolist(), bounds.tolist(), ends.tolist(), strict=True):
            rows = order[lo:hi]
            twin, prop = r.twin[f], r.prop[f]
            snap = snaps.get(twin)
            problem = None
            if snap is None:
                problem = (f"twin {twin!r} does not exist", "unknown_twin")
            else:
                spec = self._specs_of(snap.model).get(prop)
                if spec is None:
                    problem = (f"the model {snap.model} has no property or telemetry {prop!r}", "unknown_property")
                elif spec.kind in (NUMBER, INTEGER):
                    has_text = r.text is not None and any(t is not None for t in r.text[rows])
                    vals = r.value[rows]
                    bad = ~np.isfinite(vals)
                    if prop in OUTPUTS and spec.unit is None and spec.component is None:  # a reserved analytic output
                        bad |= (vals < 0) | ((vals > 1) if prop == "health" else False)
                    if spec.kind == INTEGER:
                        bad |= np.isfinite(vals) & (vals != np.round(vals))
                    if has_text:
                        problem = (f"{prop!r} expects numbers, got text values", "type")
                    elif bad.any():
                        letters.extend(_group_letters(r, rows[bad], f"twin {twin!r}: {prop}: not a finite "
                                                      f"{'integer' if spec.kind == INTEGER else 'number'}"
                                                      + (" in range (health 0–1, others ≥ 0)" if prop in OUTPUTS
                                                         else ""), "finite", transport, received))
                        keep[rows[bad]] = False
                elif spec.kind in (BOOLEAN, STRING):
                    want = bool if spec.kind == BOOLEAN else str
                    texts = r.text[rows] if r.text is not None else [None] * len(rows)
                    wrong = np.array([t is None or not isinstance(json.loads(t), want) for t in texts])
                    if wrong.any():
                        letters.extend(_group_letters(r, rows[wrong], f"twin {twin!r}: {prop}: expected "
                                                      f"{'true/false' if want is bool else 'a string'}", "type",
                                                      transport, received))
                        keep[rows[wrong]] = False
            if problem is not None:
                letters.extend(_group_letters(r, rows, problem[0], problem[1], transport, received))
                keep[rows] = False
        if keep.all():
            return None, letters
        return np.flatnonzero(keep), letters

    def _specs_of(self, model: str) -> dict[str, Spec]:
        specs = self._specs.get(model)
        if specs is None:
            registry = self.twins.models
            specs = specs_for(registry.modelset, registry.resolve(model))
            self._specs[model] = specs
        return specs

    def _validate_other(self, twin: str, model: str, path: str, value: Any) -> Any:
        registry = self.twins.models
        nested: dict[str, Any] = {}
        _set_path(nested, path, value)
        checked = validate_section(registry.resolve(model), registry.modelset, twin, "reported", nested)
        for part in path.split("."):
            checked = checked[part]
        return checked


class IngestService:
    """The :class:`~tvilling.ingest.ports.IngestSink` that transports call: the pipeline in a worker thread."""

    def __init__(self, pipeline: Pipeline) -> None:
        self.pipeline = pipeline

    async def ingest(self, envelopes: Sequence[Envelope], *, raw: RawMessage | None = None,
                     origins: Sequence[RawMessage | None] | None = None) -> IngestResult:
        transport = raw.transport if raw is not None else "api"
        return await asyncio.to_thread(self.pipeline.ingest_envelopes, envelopes, transport=transport, raw=raw,
                                       origins=origins)

    async def reject(self, raw: RawMessage, reason: str, *, rule: str = "translate") -> None:
        await asyncio.to_thread(self.pipeline.reject, raw, reason, rule)


class _Unprocessable(Exception):
    """A pure stage raised on a batch (internal): the batch is stored in parts to isolate the message."""

    def __init__(self, error: BaseException) -> None:
        super().__init__(str(error))
        self.error = error


@dataclass
class _Prepared:
    """A batch cleaned and ready to write."""

    accepted: Readings
    patches: dict[str, tuple[dict[str, Any], dict[str, Any]]]
    snaps: Mapping[str, Twin]
    letters: list[DeadLetter]
    duplicates: int
    cleaned: Any  # the cleaning result: its series state advances once written


@dataclass
class _Origins:
    """Where each row of an envelope batch came from: the envelope and its raw message."""

    envelopes: Sequence[Envelope]
    raws: Sequence[RawMessage | None] | None
    row_envelope: npt.NDArray[np.int64]  # per row, the index of its envelope
    address: str | None

    def letters(self, r: Readings, rows: npt.NDArray[np.int64], reason: str, rule: str, transport: str,
                received: datetime) -> list[DeadLetter]:
        """One dead letter per message and series, with the message's raw payload and id."""
        groups: dict[tuple[int, str, str], list[int]] = defaultdict(list)
        for i in rows.tolist():
            groups[(int(self.row_envelope[i]), r.twin[i], r.prop[i])].append(i)
        out = []
        for (e, _twin, prop), idx in groups.items():
            shown = ", ".join(f"{ts_text(int(r.ts[i]))}={_shown(r, i)}" for i in idx[:5])
            more = f" and {len(idx) - 5} more" if len(idx) > 5 else ""
            out.append(letter(self.envelopes[e], self.raws[e] if self.raws is not None else None,
                              f"{reason} ({shown}{more})", rule, transport=transport, received=received,
                              address=self.address, prop=prop, count=len(idx)))
        return out


def _shown(r: Readings, i: int) -> str:
    if r.text is not None and r.text[i] is not None:
        text = str(r.text[i])
        return text if len(text) <= 40 else text[:37] + "..."
    return repr(_jsonable(float(r.value[i])))


def _seed(snap: Twin | None, path: str) -> tuple[int, float, str | None]:
    """A new series starts from what the twin's state last recorded for it (survives restarts)."""
    if snap is None:
        return NO_TS, math.nan, None
    stamp = snap.metadata.get("reported", {}).get(path)
    if not isinstance(stamp, Mapping) or "time" not in stamp:
        return NO_TS, math.nan, None
    try:
        ts = to_us(datetime.fromisoformat(str(stamp["time"]).replace("Z", "+00:00")))
    except ValueError:
        return NO_TS, math.nan, None
    value: Any = snap.reported
    for part in path.split("."):
        value = value.get(part) if isinstance(value, Mapping) else None
    if isinstance(value, int | float) and not isinstance(value, bool):
        return ts, float(value), None
    return ts, math.nan, None if value is None else json.dumps(value)


def _newest_per_series(r: Readings) -> npt.NDArray[np.bool_]:
    """True at the row with the latest timestamp of each (twin, property) (the last such row on ties)."""
    twin = np.unique(r.twin, return_inverse=True)[1]
    props, prop = np.unique(r.prop, return_inverse=True)
    keys = twin.astype(np.int64) * len(props) + prop
    order = np.lexsort((np.arange(len(r)), r.ts, keys))
    last = np.ones(len(r), dtype=bool)
    last[:-1] = keys[order][1:] != keys[order][:-1]
    out = np.zeros(len(r), dtype=bool)
    out[order[last]] = True
    return out


def _set_path(target: dict[str, Any], path: str, value: Any) -> None:
    parts = path.split(".")
    for part in parts[:-1]:
        target = target.setdefault(part, {})
    target[parts[-1]] = value


def _group_letters(r: Readings, rows: npt.NDArray[np.int64], reason: str, rule: str, transport: str,
                   received: datetime) -> list[DeadLetter]:
    """One dead letter per series, holding every rejected reading of it (times and values)."""
    out = []
    by_series: dict[tuple[str, str], list[int]] = defaultdict(list)
    for i in rows.tolist():
        by_series[(r.twin[i], r.prop[i])].append(i)
    for (twin, prop), idx in by_series.items():
        values = [json.loads(r.text[i]) if r.text is not None and r.text[i] is not None
                  else _jsonable(float(r.value[i])) for i in idx]
        doc = {"twin": twin, "property": prop, "ts": [ts_text(int(r.ts[i])) for i in idx], "values": values}
        out.append(DeadLetter.of(msgspec.json.encode(doc), transport=transport, twin=twin, property=prop, rule=rule,
                                 reason=reason, received=received, count=len(idx)))
    return out


def _jsonable(x: float) -> float | str:
    return x if math.isfinite(x) else str(x)
