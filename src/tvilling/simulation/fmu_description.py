"""What an FMU declares: its FMI version, interfaces, binaries and variables, read from ``modelDescription.xml``.

:func:`read_fmu` checks that a file is an FMU this platform can run — a ZIP archive holding a
``modelDescription.xml`` of FMI 2.0 or 3.0 with a binary for this platform — and maps its variables to
a :class:`~tvilling.simulation.ports.Signature`: inputs, outputs, parameters (with their start values
as defaults and their ``min``/``max`` as bounds) and continuous states. Each problem is an
:class:`~tvilling.core.errors.Invalid` error that names the FMU and what was wrong.

fmpy (the ``sim`` extra) reads the XML; :func:`require_fmpy` says how to install it when it is missing.
"""

from __future__ import annotations

import difflib
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

from tvilling.core.errors import Invalid, NotFound, Unavailable
from tvilling.simulation.ports import Signature, Variable

#: the interfaces an FMU may offer, by the names used in the CLI and in :class:`FmuDescription`
CO_SIMULATION = "co-simulation"
MODEL_EXCHANGE = "model-exchange"

#: FMI types with a numeric value (Float32 … UInt64, Boolean and Enumeration included); String, Binary and
#: Clock variables are not mapped to the signature
NUMERIC_TYPES = frozenset({"Real", "Integer", "Boolean", "Enumeration", "Float32", "Float64", "Int8", "UInt8",
                           "Int16", "UInt16", "Int32", "UInt32", "Int64", "UInt64"})


def require_fmpy() -> Any:
    """The ``fmpy`` module, or :class:`Unavailable` naming the extra that installs it."""
    try:
        import fmpy
    except ImportError:
        raise Unavailable("running an FMU needs fmpy, which is not installed: pip install 'tvilling[sim]'",
                          dependency="fmpy", extra="sim") from None
    return fmpy


@dataclass(frozen=True)
class FmuDescription:
    """An FMU's declaration: its file, FMI version, model, interfaces and variables.

    ``variables`` maps every numeric scalar variable's name to fmpy's ``ModelVariable``; ``interfaces``
    lists ``co-simulation`` and/or ``model-exchange`` with the model identifier of each.
    """

    path: Path
    fmi_version: str
    model_name: str
    guid: str
    interfaces: dict[str, str]
    signature: Signature
    variables: dict[str, Any]
    model_description: Any  # fmpy's ModelDescription

    @property
    def major(self) -> int:
        """The FMI major version: 2 or 3."""
        return int(self.fmi_version.split(".")[0])

    def variable(self, name: str, role: str = "variable") -> Any:
        """fmpy's variable of this name; :class:`Invalid` naming it and listing close matches if unknown."""
        found = self.variables.get(name)
        if found is None:
            raise unknown_name(name, self.variables, role, self.path)
        return found

    def interface(self, wanted: str | None) -> str:
        """The interface to run: ``wanted`` if the FMU offers it, else co-simulation when offered."""
        if wanted is None:
            return CO_SIMULATION if CO_SIMULATION in self.interfaces else MODEL_EXCHANGE
        if wanted not in (CO_SIMULATION, MODEL_EXCHANGE):
            raise Invalid(f"unknown FMU interface {wanted!r}: use {CO_SIMULATION} or {MODEL_EXCHANGE}",
                          field="interface")
        if wanted not in self.interfaces:
            raise Invalid(f"FMU {self.path.name} does not offer {wanted}; it offers "
                          f"{', '.join(sorted(self.interfaces))}", fmu=str(self.path), field="interface")
        return wanted


def unknown_name(name: str, known: Any, role: str, path: Path) -> Invalid:
    """The error for a variable name an FMU does not declare, with the closest declared names."""
    close = difflib.get_close_matches(name, list(known), n=5, cutoff=0.5)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    return Invalid(f"FMU {path.name} has no {role} named {name!r}{hint}", fmu=str(path), variable=name,
                   close_matches=close)


def read_fmu(path: str | Path) -> FmuDescription:
    """Read and check an FMU file: an FMI 2.0 or 3.0 archive with a binary for this platform."""
    path = Path(path)
    if not path.is_file():
        raise NotFound(f"FMU file {path} does not exist", fmu=str(path))
    names = _archive_names(path)
    version = _fmi_version(path)
    if not (version.startswith("2.") or version.startswith("3.")):
        raise Invalid(f"FMU {path.name} is FMI {version}, which is not supported (supported: FMI 2.0 and 3.0)",
                      fmu=str(path), fmi_version=version)
    fmpy = require_fmpy()
    from fmpy.model_description import read_model_description

    try:
        md = read_model_description(str(path), validate=False)
    except Exception as exc:  # fmpy raises plain exceptions on bad XML: translate at the boundary
        raise Invalid(f"FMU {path.name} has an unreadable modelDescription.xml: {exc}", fmu=str(path)) from exc
    interfaces: dict[str, str] = {}
    if md.coSimulation is not None:
        interfaces[CO_SIMULATION] = md.coSimulation.modelIdentifier
    if md.modelExchange is not None:
        interfaces[MODEL_EXCHANGE] = md.modelExchange.modelIdentifier
    if not interfaces:
        raise Invalid(f"FMU {path.name} offers neither co-simulation nor model exchange", fmu=str(path))
    _check_binaries(path, names, interfaces, version, fmpy)
    variables = {v.name: v for v in md.modelVariables if v.type in NUMERIC_TYPES and not v.dimensions}
    return FmuDescription(path=path, fmi_version=version, model_name=md.modelName or path.stem,
                          guid=md.guid or "", interfaces=interfaces, signature=_signature(md, variables),
                          variables=variables, model_description=md)


def _archive_names(path: Path) -> list[str]:
    if not zipfile.is_zipfile(path):
        raise Invalid(f"{path.name} is not an FMU: it is not a ZIP archive", fmu=str(path))
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
    if "modelDescription.xml" not in names:
        raise Invalid(f"{path.name} is not an FMU: it has no modelDescription.xml", fmu=str(path))
    return names


def _fmi_version(path: Path) -> str:
    with zipfile.ZipFile(path) as archive, archive.open("modelDescription.xml") as xml:
        try:
            root = ElementTree.parse(xml).getroot()
        except ElementTree.ParseError as exc:
            raise Invalid(f"{path.name} is not an FMU: its modelDescription.xml is not XML ({exc})",
                          fmu=str(path)) from exc
    version = root.get("fmiVersion")
    if root.tag != "fmiModelDescription" or not version:
        raise Invalid(f"{path.name} is not an FMU: modelDescription.xml has no fmiModelDescription with an "
                      "fmiVersion", fmu=str(path))
    return version


def _check_binaries(path: Path, names: list[str], interfaces: dict[str, str], version: str, fmpy: Any) -> None:
    folder = fmpy.platform if version.startswith("2.") else fmpy.platform_tuple
    ext = fmpy.sharedLibraryExtension
    for interface, identifier in interfaces.items():
        if f"binaries/{folder}/{identifier}{ext}" not in names:
            available = sorted({n.split("/")[1] for n in names if n.startswith("binaries/") and n.count("/") >= 2
                                and not n.endswith("/")})
            if any(n.startswith("sources/") and n.endswith(".c") for n in names):
                available.append("C sources")
            raise Invalid(f"FMU {path.name} has no binary for this platform ({folder}) for {interface}: it has "
                          f"{', '.join(available) or 'no binaries at all'}", fmu=str(path), platform=folder,
                          available=available)


def _number(text: str | None) -> float | None:
    if text is None:
        return None
    if text in ("true", "false"):
        return 1.0 if text == "true" else 0.0
    try:
        return float(text)
    except ValueError:
        return None


def _unit(v: Any) -> str | None:
    if v.unit:
        return str(v.unit)
    declared = v.declaredType
    return str(declared.unit) if declared is not None and getattr(declared, "unit", None) else None


def _bound(v: Any, which: str) -> float | None:
    own = getattr(v, which, None)
    if own is None and v.declaredType is not None:
        own = getattr(v.declaredType, which, None)
    return _number(own)


def _port_variable(v: Any, with_default: bool) -> Variable:
    return Variable(name=v.name, unit=_unit(v), description=v.description or "",
                    default=_number(v.start) if with_default else None,
                    lower=_bound(v, "min"), upper=_bound(v, "max"))


def _signature(md: Any, variables: dict[str, Any]) -> Signature:
    numeric = list(variables.values())
    states = [u.variable.derivative for u in md.derivatives
              if u.variable is not None and u.variable.derivative is not None]
    return Signature(
        inputs=tuple(_port_variable(v, True) for v in numeric if v.causality == "input"),
        outputs=tuple(_port_variable(v, False) for v in numeric if v.causality == "output"),
        parameters=tuple(_port_variable(v, True) for v in numeric
                         if v.causality == "parameter" and v.variability in ("fixed", "tunable")),
        states=tuple(_port_variable(v, True) for v in states if v.name in variables),
    )
