"""A platform with the example plant, a pipeline over it, and a history that records appends."""

from __future__ import annotations

from pathlib import Path

from tvilling.app import build_platform
from tvilling.config import Settings
from tvilling.core.readings import Readings
from tvilling.ingest.deadletter import MemoryDeadLetters
from tvilling.ingest.pipeline import IngestSettings, Pipeline
from tvilling.models.builtin import builtin_documents

ROOT = Path(__file__).resolve().parents[2]
BEARING = "dtmi:tvilling:example:Bearing;1"
MACHINE = "dtmi:tvilling:example:Machine;1"


class RecordingHistory:
    """Keeps every appended batch, to assert on what reached history."""

    def __init__(self) -> None:
        self.batches: list[Readings] = []
        self.message_ids: list[tuple[str, str]] = []

    def append(self, readings: Readings, *, message_ids=()) -> int:
        if len(readings):
            self.batches.append(readings)
        self.message_ids.extend(message_ids)
        return len(readings)

    def range(self, twin, prop, start_us, end_us, *, limit=1000, after_us=None):
        from tvilling.history.ports import Point

        if not self.batches:
            return []
        r = self.all
        rows = [i for i in range(len(r)) if r.twin[i] == twin and r.prop[i] == prop and start_us <= r.ts[i] < end_us]
        return [Point(int(r.ts[i]), float(r.value[i]), r.text[i] if r.text is not None else None)
                for i in rows][:limit]

    def recent_message_ids(self, limit: int) -> list[tuple[str, str]]:
        return self.message_ids[-limit:] if limit > 0 else []

    @property
    def all(self) -> Readings:
        return Readings.concat(self.batches)


def make_pipeline(settings: IngestSettings | None = None, platform=None):
    if platform is None:
        platform = build_platform(Settings(store="memory"))
        docs = builtin_documents("plant")
        platform.models.add(docs)
        platform.twins.put("B1", {"model": BEARING})
        platform.twins.put("B2", {"model": BEARING})
        platform.twins.put("M1", {"model": MACHINE})
    history = RecordingHistory()
    letters = MemoryDeadLetters()
    return platform, Pipeline(platform.twins, history, letters, settings), history, letters
