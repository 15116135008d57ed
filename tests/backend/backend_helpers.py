"""Values the backend tests write: twin events, commands, alarms, dead letters, models."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from pgtest import PG_DSN
from tvilling.backend import Backend, open_backend
from tvilling.core.events import RELATIONSHIP_SET, TWIN_CREATED, TWIN_PATCHED, Event
from tvilling.decisions.alarms.record import Alarm, new_alarm
from tvilling.decisions.lifecycle import CommandRecord, new_command
from tvilling.ingest.deadletter import DeadLetter
from tvilling.twins.ports import ModelRecord

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
MODEL = "dtmi:t:Pump;1"


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def created(twin: str, seconds: float = 0, **reported: object) -> Event:
    return Event(twin=twin, revision=1, time=at(seconds), actor="t", type=TWIN_CREATED,
                 payload={"model": MODEL, "reported": reported})


def patched(twin: str, revision: int, seconds: float, **reported: object) -> Event:
    return Event(twin=twin, revision=revision, time=at(seconds), actor="t", type=TWIN_PATCHED,
                 payload={"reported": reported})


def related(twin: str, revision: int, seconds: float, target: str) -> Event:
    return Event(twin=twin, revision=revision, time=at(seconds), actor="t", type=RELATIONSHIP_SET,
                 payload={"id": f"to-{target}", "name": "feeds", "target": target})


def command(twin: str = "P1") -> CommandRecord:
    return new_command(twin, "setSpeed", {"rpm": 900.0}, now=T0, timeout_s=30)


def alarm(twin: str = "P1") -> Alarm:
    return new_alarm(twin=twin, model=MODEL, rule="hot", severity="major", message=f"{twin} is hot",
                     prop="temperature", value=91.5, now=T0)


def letter(payload: bytes = b"{}", twin: str = "P1") -> DeadLetter:
    return DeadLetter.of(payload, transport="mqtt", address=f"tvilling/{twin}/telemetry", rule="type",
                         reason="bad", received=T0, twin=twin, property="temperature", message_id="m-1")


def model() -> ModelRecord:
    return ModelRecord(id=MODEL, document={"@id": MODEL, "@type": "Interface"}, uploaded=T0)


def open_kind(kind: str, tmp_path, request) -> Backend:
    if kind == "memory":
        return open_backend("memory")
    if kind == "embedded":
        return open_backend(tmp_path / "data")
    return open_backend(PG_DSN, schema=request.getfixturevalue("pg_schema"))
