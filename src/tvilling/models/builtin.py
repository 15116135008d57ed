"""DTDL models shipped with Tvilling: the example plant (v1 to v4, and v5 for the simulated plant with its jobs), and
the public data sets.

>>> sorted(builtin_names())
['datasets', 'plant', 'plant-v2', 'plant-v3', 'plant-v4', 'plant-v5']
>>> "dtmi:tvilling:example:Bearing;1" in {d["@id"] for d in builtin_documents("plant")}
True
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tvilling.core.errors import NotFound

LIBRARY = Path(__file__).resolve().parent / "library"


def builtin_names() -> list[str]:
    return sorted(p.name for p in LIBRARY.iterdir() if p.is_dir())


def builtin_dir(name: str) -> Path:
    path = LIBRARY / name
    if not path.is_dir():
        raise NotFound(f"no built-in model set {name!r}; there are {builtin_names()}", name=name)
    return path


def builtin_documents(name: str) -> list[dict[str, Any]]:
    """The DTDL documents of a built-in model set, in file-name order."""
    docs: list[dict[str, Any]] = []
    for path in sorted(builtin_dir(name).glob("*.json")):
        doc = json.loads(path.read_text(encoding="utf-8"))
        docs.extend(doc if isinstance(doc, list) else [doc])
    return docs
