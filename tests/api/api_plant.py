"""The example plant used by the API tests: model ids and documents."""

from __future__ import annotations

import json
from pathlib import Path

from tvilling.models.builtin import builtin_dir

ROOT = Path(__file__).resolve().parents[2]
PLANT = builtin_dir("plant")
PLANT_V2 = builtin_dir("plant-v2")
LINE = "dtmi:tvilling:example:ProductionLine;1"
MACHINE = "dtmi:tvilling:example:Machine;1"
BEARING = "dtmi:tvilling:example:Bearing;1"
SPINDLE = "dtmi:tvilling:example:Spindle;1"


def plant_documents(folder: Path = PLANT) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))]
