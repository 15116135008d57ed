"""Semantic types, units and conversions."""

from __future__ import annotations

import math

import pytest

from tvilling.core.errors import Invalid
from tvilling.models.units import SEMANTIC_TYPES, UNITS, convert, unit_kind, units_for


@pytest.mark.parametrize(
    ("value", "source", "target", "expected"),
    [
        (176.0, "degreeFahrenheit", "degreeCelsius", 80.0),
        (-40.0, "degreeCelsius", "degreeFahrenheit", -40.0),
        (0.0, "degreeCelsius", "kelvin", 273.15),
        (32.0, "degreeFahrenheit", "kelvin", 273.15),
        (60.0, "revolutionPerMinute", "revolutionPerSecond", 1.0),
        (1.0, "revolutionPerSecond", "radianPerSecond", 2 * math.pi),
        (1.0, "gForce", "metrePerSecondSquared", 9.80665),
        (100.0, "centimetrePerSecondSquared", "metrePerSecondSquared", 1.0),
        (1.0, "hour", "minute", 60.0),
        (1.0, "day", "second", 86400.0),
        (1.0, "bar", "kilopascal", 100.0),
        (1.0, "poundPerSquareInch", "pascal", 6894.757293168361),
        (1.0, "kilowattHour", "joule", 3.6e6),
        (1.0, "kibibyte", "bit", 8192.0),
        (50.0, "percent", "unity", 0.5),
        (1.0, "mile", "kilometre", 1.609344),
        (36.0, "kilometrePerHour", "metrePerSecond", 10.0),
        (1.0, "gallon", "litre", 3.785411784),
        (1.0, "horsepower", "watt", 745.6998715822702),
        (10.0, "decibel", "bel", 1.0),
    ],
)
def test_convert(value: float, source: str, target: str, expected: float) -> None:
    assert convert(value, source, target) == pytest.approx(expected, rel=1e-12, abs=1e-12)


def test_round_trip_is_identity_for_every_unit() -> None:
    for unit in UNITS.values():
        base = next(u.name for u in UNITS.values() if u.dimension == unit.dimension)
        assert convert(convert(12.5, unit.name, base), base, unit.name) == pytest.approx(12.5, rel=1e-9)


def test_incompatible_or_unknown_units_are_rejected() -> None:
    with pytest.raises(Invalid, match="cannot convert 'metre'") as info:
        convert(1.0, "metre", "second")
    assert info.value.fields["rule"] == "unit"
    with pytest.raises(Invalid, match="unknown unit 'furlong'"):
        convert(1.0, "furlong", "metre")
    with pytest.raises(Invalid, match="unknown unit 'parsec'"):
        convert(1.0, "metre", "parsec")
    with pytest.raises(Invalid, match="cannot convert"):
        convert(1.0, "gray", "sievert")  # same unit type, different doses


def test_unit_kind_and_semantic_type_table() -> None:
    assert unit_kind("degreeCelsius") == "TemperatureUnit"
    assert unit_kind("revolutionPerMinute") == "AngularVelocityUnit"
    assert unit_kind("nope") is None
    assert units_for("Temperature") == {"degreeCelsius", "degreeFahrenheit", "kelvin"}
    assert units_for("TimeSpan") >= {"hour", "second", "year"}
    assert units_for("RelativeHumidity") == units_for("Concentration")
    assert "gForce" in units_for("Acceleration")
    assert units_for("Unknown") == frozenset()
    assert len(SEMANTIC_TYPES) == 52
    for semantic, unit_type in SEMANTIC_TYPES.items():
        assert units_for(semantic), semantic
        assert all(unit_kind(u) == unit_type for u in units_for(semantic))
