"""Build the test FMUs: small C models compiled with gcc against the FMI headers fmpy ships, and a
Python model packed with pythonfmu. Nothing here is downloaded: every binary is built from this folder.

The C models implement the FMI functions they use; every other function the standard declares is
generated from the standard's own ``fmi2FunctionTypes.h``/``fmi3FunctionTypes.h`` as a stub that returns
an error, so that the binary exports the full API an importer (fmpy) binds.
"""

from __future__ import annotations

import re
import subprocess
import zipfile
from collections.abc import Callable
from pathlib import Path

import fmpy

SOURCES = Path(__file__).parent / "fmu_sources"
HEADERS = Path(fmpy.__file__).parent / "c-code"

LAG2_XML = """<?xml version="1.0" encoding="UTF-8"?>
<fmiModelDescription fmiVersion="2.0" modelName="Lag" guid="{lag2-0001}" description="first-order lag"
                     numberOfEventIndicators="0">
  <ModelExchange modelIdentifier="lag2"/>
  <CoSimulation modelIdentifier="lag2" canHandleVariableCommunicationStepSize="true"/>
  <UnitDefinitions><Unit name="K"/><Unit name="s"/></UnitDefinitions>
  <DefaultExperiment startTime="0" stopTime="3" stepSize="0.01"/>
  <ModelVariables>
    <ScalarVariable name="u" valueReference="0" causality="input" variability="continuous" description="set point">
      <Real start="0"/></ScalarVariable>
    <ScalarVariable name="y" valueReference="1" causality="output" variability="continuous" initial="calculated"
                    description="lagged output"><Real unit="K"/></ScalarVariable>
    <ScalarVariable name="K" valueReference="2" causality="parameter" variability="fixed" initial="exact"
                    description="gain"><Real start="2" min="0" max="10"/></ScalarVariable>
    <ScalarVariable name="T" valueReference="3" causality="parameter" variability="fixed" initial="exact"
                    description="time constant"><Real start="0.5" min="0.001" max="100" unit="s"/></ScalarVariable>
    <ScalarVariable name="x" valueReference="4" causality="local" variability="continuous" initial="exact"
                    description="state"><Real start="0" unit="K"/></ScalarVariable>
    <ScalarVariable name="der(x)" valueReference="5" causality="local" variability="continuous"
                    initial="calculated"><Real derivative="5"/></ScalarVariable>
  </ModelVariables>
  <ModelStructure>
    <Outputs><Unknown index="2"/></Outputs>
    <Derivatives><Unknown index="6"/></Derivatives>
    <InitialUnknowns><Unknown index="2"/><Unknown index="6"/></InitialUnknowns>
  </ModelStructure>
</fmiModelDescription>
"""

OSCILLATOR3_XML = """<?xml version="1.0" encoding="UTF-8"?>
<fmiModelDescription fmiVersion="3.0" modelName="Oscillator" instantiationToken="{oscillator3-0001}"
                     description="mass on a spring">
  <ModelExchange modelIdentifier="oscillator3"/>
  <CoSimulation modelIdentifier="oscillator3" canHandleVariableCommunicationStepSize="true"/>
  <UnitDefinitions><Unit name="m"/><Unit name="N"/><Unit name="kg"/><Unit name="N/m"/></UnitDefinitions>
  <ModelVariables>
    <Float64 name="time" valueReference="0" causality="independent" variability="continuous"/>
    <Float64 name="F" valueReference="1" causality="input" start="0" unit="N" description="force"/>
    <Float64 name="x" valueReference="2" causality="output" variability="continuous" initial="exact" start="1"
             unit="m" description="position"/>
    <Float64 name="der(x)" valueReference="3" causality="local" variability="continuous" derivative="2"/>
    <Float64 name="v" valueReference="4" causality="local" variability="continuous" initial="exact" start="0"
             description="velocity"/>
    <Float64 name="der(v)" valueReference="5" causality="local" variability="continuous" derivative="4"/>
    <Float64 name="k" valueReference="6" causality="parameter" variability="fixed" start="4" min="0.01" unit="N/m"
             description="stiffness"/>
    <Float64 name="m" valueReference="7" causality="parameter" variability="fixed" start="1" min="0.001" unit="kg"
             description="mass"/>
  </ModelVariables>
  <ModelStructure>
    <Output valueReference="2"/>
    <ContinuousStateDerivative valueReference="3"/>
    <ContinuousStateDerivative valueReference="5"/>
    <InitialUnknown valueReference="3"/>
    <InitialUnknown valueReference="5"/>
  </ModelStructure>
</fmiModelDescription>
"""

COOLING_PY = '''
import math

from pythonfmu import Fmi2Causality, Fmi2Slave, Fmi2Variability, Integer, Real


class Cooling(Fmi2Slave):
    """Newton cooling towards the ambient temperature, stepped exactly (a test model of Tvilling)."""

    author = "Tvilling tests"
    description = "Newton cooling"

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.ambient = 20.0
        self.tau = 10.0
        self.temperature = 80.0
        self.steps = 0
        self.register_variable(Real("ambient", causality=Fmi2Causality.input))
        self.register_variable(Real("tau", causality=Fmi2Causality.parameter, variability=Fmi2Variability.tunable))
        self.register_variable(Real("temperature", causality=Fmi2Causality.output))
        self.register_variable(Integer("steps", causality=Fmi2Causality.output))

    def do_step(self, current_time, step_size):
        self.temperature = self.ambient + (self.temperature - self.ambient) * math.exp(-step_size / self.tau)
        self.steps += 1
        return True
'''


def stubs(version: int, implemented: str) -> str:
    """C definitions, returning an error, of every FMI function the standard declares and ``implemented``
    does not define; their signatures are the standard's own (the header is included to check them)."""
    text = (HEADERS / f"fmi{version}FunctionTypes.h").read_text()
    declared = re.findall(rf"typedef\s+(fmi{version}Status)\s+(fmi{version}\w+)TYPE\s*\((.*?)\);", text, re.S)
    defined = set(re.findall(rf"^\S.*?\b(fmi{version}\w+)\s*\(", implemented, re.M))
    lines = [f'#include "fmi{version}Functions.h"']
    for status, name, params in declared:
        if name not in defined:
            lines.append(f"{status} {name}({params}) {{ return fmi{version}Error; }}")
    return "\n".join(lines) + "\n"


def build_c_fmu(source: str, xml: str, identifier: str, version: int, dest: Path) -> Path:
    """Compile ``fmu_sources/<source>`` (and its generated stubs) and pack it with ``xml`` as an FMU."""
    work = dest / f"{identifier}-build"
    work.mkdir(parents=True, exist_ok=True)
    model = SOURCES / source
    (work / "stubs.c").write_text(stubs(version, model.read_text()))
    library = work / f"{identifier}.so"
    subprocess.run(["gcc", "-shared", "-fPIC", "-O2", "-Wall", "-Werror", "-Wno-unused-parameter",
                    f"-I{HEADERS}", str(model), str(work / "stubs.c"), "-o", str(library), "-lm"],
                   check=True, capture_output=True, text=True)
    platform = "linux64" if version == 2 else "x86_64-linux"
    fmu = dest / f"{identifier}.fmu"
    with zipfile.ZipFile(fmu, "w") as archive:
        archive.writestr("modelDescription.xml", xml)
        archive.write(library, f"binaries/{platform}/{identifier}.so")
        archive.write(model, f"sources/{source}")
    return fmu


def build_python_fmu(dest: Path) -> Path:
    """The ``Cooling`` model (co-simulation, FMI 2.0) packed by pythonfmu."""
    from pythonfmu import FmuBuilder

    script = dest / "cooling.py"
    script.write_text(COOLING_PY)
    return Path(FmuBuilder.build_FMU(script, dest=dest))


def rewrite(fmu: Path, dest: Path, keep: Callable[[str], bool], extra: dict[str, bytes | str]) -> Path:
    """A copy of ``fmu`` with only the members ``keep`` accepts, plus ``extra`` members."""
    with zipfile.ZipFile(fmu) as src, zipfile.ZipFile(dest, "w") as out:
        for name in src.namelist():
            if keep(name):
                out.writestr(name, src.read(name))
        for name, data in extra.items():
            out.writestr(name, data)
    return dest
