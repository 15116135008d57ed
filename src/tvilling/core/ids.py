"""Identifiers: twin ids and DTMIs (Digital Twin Model Identifiers).

>>> parse_dtmi("dtmi:tvilling:example:Bearing;2").version
2
>>> check_twin_id("line-1/machine 2")  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
tvilling.core.errors.Invalid: twin id 'line-1/machine 2' may only contain ASCII letters, digits and . _ : - ...
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from tvilling.core.errors import Invalid, TooLarge

MAX_TWIN_ID = 128
MAX_DTMI = 2048

_TWIN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:\-]{0,127}")
_SEGMENT = r"(?:_+[A-Za-z0-9]|[A-Za-z])(?:[A-Za-z0-9_]*[A-Za-z0-9])?"
_DTMI = re.compile(rf"dtmi:{_SEGMENT}(?::{_SEGMENT})*(?:;([1-9][0-9]{{0,8}})(?:\.([1-9][0-9]{{0,5}}))?)?")


def check_twin_id(twin_id: str, *, field: str = "id") -> str:
    """Return ``twin_id`` if it is a valid twin id, else raise ``Invalid`` / ``TooLarge``.

    The same rule holds for relationship ids (``field`` names which one is meant).
    """
    label = "twin id" if field == "id" else field
    if not isinstance(twin_id, str):
        raise Invalid(f"{label} must be a string, got {type(twin_id).__name__}", field=field, rule="type")
    if len(twin_id) > MAX_TWIN_ID:
        raise TooLarge(
            f"{label} is {len(twin_id)} characters long; at most {MAX_TWIN_ID} are allowed",
            field=field,
            rule="max_length",
        )
    if not _TWIN_ID.fullmatch(twin_id):
        raise Invalid(
            f"{label} {twin_id!r} may only contain ASCII letters, digits and . _ : - "
            f"(1 to {MAX_TWIN_ID} characters, starting with a letter or digit)",
            field=field,
            rule="pattern",
        )
    return twin_id


@dataclass(frozen=True, slots=True)
class Dtmi:
    """A parsed DTMI: ``dtmi:<path>;<major>[.<minor>]``."""

    path: str
    version: int | None
    minor: int | None

    @property
    def unversioned(self) -> str:
        return f"dtmi:{self.path}"

    def __str__(self) -> str:
        if self.version is None:
            return self.unversioned
        minor = f".{self.minor}" if self.minor is not None else ""
        return f"{self.unversioned};{self.version}{minor}"


def is_dtmi(value: object) -> bool:
    return isinstance(value, str) and len(value) <= MAX_DTMI and _DTMI.fullmatch(value) is not None


def parse_dtmi(value: str, *, field: str = "@id") -> Dtmi:
    """Parse a DTMI, raising ``Invalid`` naming ``field`` when it is not one."""
    if not isinstance(value, str):
        raise Invalid(f"{field} must be a DTMI string, got {type(value).__name__}", field=field, rule="dtmi")
    if len(value) > MAX_DTMI:
        raise TooLarge(f"{field} is longer than {MAX_DTMI} characters", field=field, rule="max_length")
    m = _DTMI.fullmatch(value)
    if m is None:
        raise Invalid(
            f"{field} {value!r} is not a valid DTMI (expected dtmi:segment:segment;version)",
            field=field,
            rule="dtmi",
        )
    body = value[5:].split(";", 1)[0]
    major = int(m.group(1)) if m.group(1) else None
    minor = int(m.group(2)) if m.group(2) else None
    return Dtmi(body, major, minor)
