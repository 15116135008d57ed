"""Where the shared benchmark data sets are: ``$TVILLING_DATASETS``, else ``../shared/datasets`` beside the
checkout, else ``/work/shared/datasets``. Tests that need them skip with a clear message when absent."""

from __future__ import annotations

import os
from pathlib import Path

_ROOT = Path(__file__).resolve().parents[1]


def datasets_dir() -> Path:
    env = os.environ.get("TVILLING_DATASETS")
    if env:
        return Path(env)
    for candidate in (_ROOT.parent / "shared" / "datasets", Path("/work/shared/datasets")):
        if candidate.is_dir():
            return candidate
    return _ROOT.parent / "shared" / "datasets"
