"""A platform with the example plant, a pipeline over it, and a history that records appends."""

from __future__ import annotations

from pathlib import Path

from tvilling.app import build_platform
from tvilling.config import Settings
from tvilling.history.readings import Readings
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

    def append(self, readings: Readings) -> int:
        self.batches.append(readings)
        return len(readings)

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
