"""Fixtures of the simulation tests: the test FMUs, built once per session from ``fmu_sources/``."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

_HERE = str(Path(__file__).resolve().parent)
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)


@pytest.fixture(scope="session")
def fmus(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The test FMUs by name: ``lag2`` (FMI 2.0, ME + CS, C), ``oscillator3`` (FMI 3.0, ME + CS, C) and
    ``cooling`` (FMI 2.0 co-simulation, pythonfmu). Skipped when the ``sim`` extra is not installed."""
    pytest.importorskip("fmpy")
    import fmu_build

    dest = tmp_path_factory.mktemp("fmus")
    return {
        "lag2": fmu_build.build_c_fmu("lag2.c", fmu_build.LAG2_XML, "lag2", 2, dest),
        "oscillator3": fmu_build.build_c_fmu("oscillator3.c", fmu_build.OSCILLATOR3_XML, "oscillator3", 3, dest),
        "cooling": fmu_build.build_python_fmu(dest),
    }
