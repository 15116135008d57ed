"""Semantic types and units of the DTDL QuantitativeTypes extension, with conversions.

Each unit converts to the SI base of its unit type by ``si = value * factor + offset``.

>>> round(convert(176.0, "degreeFahrenheit", "degreeCelsius"), 6)
80.0
>>> unit_kind("revolutionPerMinute")
'AngularVelocityUnit'
>>> SEMANTIC_TYPES["Temperature"]
'TemperatureUnit'

Conventions where a unit name is ambiguous: ``year`` is the Julian year (365.25 days),
``gallon`` and ``fluidOunce`` are US liquid measures, ``britishThermalUnit`` is the
International Table BTU, ``horsepower`` is mechanical horsepower, ``ounce``, ``pound`` and
``ton`` under ForceUnit are ounce-force, pound-force and short ton-force (2000 lbf),
``inchesOfMercury``/``millimetresOfMercury``/``inchesOfWater`` are conventional values.
Gray and sievert share a unit type in DTDL but measure different doses, so they do not convert
into each other.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from tvilling.core.errors import Invalid

#: The QuantitativeTypes extension context (DTDL v3); semantic types are built into DTDL v2.
QUANTITATIVE_TYPES_CONTEXT = "dtmi:dtdl:extension:quantitativeTypes;1"


@dataclass(frozen=True, slots=True)
class Unit:
    """A unit: its unit type, and its affine conversion to the SI base of its dimension."""

    name: str
    unit_type: str
    factor: float
    offset: float = 0.0
    dimension: str = ""


_BTU = 1055.05585262  # joule, International Table
_LBF = 4.4482216152605  # newton
_GALLON = 0.003785411784  # cubic metre, US liquid
_CUBIC_FOOT = 0.028316846592
_HOUR = 3600.0
_YEAR = 365.25 * 86400.0
_G = 9.80665
_PI = math.pi


def _binary(unit: str, base: float) -> dict[str, float]:
    prefixes = {"kibi": 10, "mebi": 20, "gibi": 30, "tebi": 40, "exbi": 60, "zebi": 70, "yobi": 80}
    out = {unit: base}
    for prefix, power in prefixes.items():
        out[prefix + unit] = base * 2.0**power
    return out


_POWER = {
    "britishThermalUnitPerHour": _BTU / _HOUR,
    "gigajoulePerHour": 1e9 / _HOUR,
    "gigawatt": 1e9,
    "horsepower": 745.6998715822702,
    "joulePerHour": 1 / _HOUR,
    "joulePerSecond": 1.0,
    "kiloBritishThermalUnitPerHour": 1000 * _BTU / _HOUR,
    "kilojoulePerHour": 1e3 / _HOUR,
    "kilojoulePerSecond": 1e3,
    "kilowatt": 1e3,
    "kilowattHourPerYear": 1e3 * _HOUR / _YEAR,
    "megajoulePerHour": 1e6 / _HOUR,
    "megawatt": 1e6,
    "microwatt": 1e-6,
    "milliwatt": 1e-3,
    "tonOfRefrigeration": 12000 * _BTU / _HOUR,
    "watt": 1.0,
}
_LENGTH = {
    "astronomicalUnit": 149597870700.0,
    "centimetre": 0.01,
    "foot": 0.3048,
    "inch": 0.0254,
    "kilometre": 1e3,
    "metre": 1.0,
    "micrometre": 1e-6,
    "mile": 1609.344,
    "millimetre": 1e-3,
    "nanometre": 1e-9,
    "nauticalMile": 1852.0,
}
_ANGLE = {
    "degreeOfArc": _PI / 180,
    "minuteOfArc": _PI / 10800,
    "radian": 1.0,
    "secondOfArc": _PI / 648000,
    "turn": 2 * _PI,
}
_UNITLESS = {
    "partsPerBillion": 1e-9,
    "partsPerMillion": 1e-6,
    "partsPerQuadrillion": 1e-15,
    "partsPerTrillion": 1e-12,
    "percent": 0.01,
    "unity": 1.0,
}
_DENSITY = {
    "gramPerCubicMetre": 1e-3,
    "kilogramPerCubicMetre": 1.0,
    "microgramPerCubicMetre": 1e-9,
    "milligramPerCubicMetre": 1e-6,
}
_FORCE = {"newton": 1.0, "ounce": _LBF / 16, "pound": _LBF, "ton": 2000 * _LBF}

# unit type -> unit name -> factor to the SI base (offsets are listed separately)
_FACTORS: dict[str, dict[str, float]] = {
    "AccelerationUnit": {"centimetrePerSecondSquared": 0.01, "gForce": _G, "metrePerSecondSquared": 1.0},
    "AngleUnit": _ANGLE,
    "AngularAccelerationUnit": {"radianPerSecondSquared": 1.0},
    "AngularVelocityUnit": {
        "degreePerSecond": _PI / 180,
        "radianPerSecond": 1.0,
        "revolutionPerMinute": 2 * _PI / 60,
        "revolutionPerSecond": 2 * _PI,
    },
    "ApparentEnergyUnit": {
        "gigavoltAmpereHour": 1e9 * _HOUR,
        "kilovoltAmpereHour": 1e3 * _HOUR,
        "megavoltAmpereHour": 1e6 * _HOUR,
        "voltAmpereHour": _HOUR,
    },
    "ApparentPowerUnit": {
        "gigavoltAmpere": 1e9,
        "kilovoltAmpere": 1e3,
        "megavoltAmpere": 1e6,
        "millivoltAmpere": 1e-3,
        "voltAmpere": 1.0,
    },
    "AreaUnit": {
        "acre": 4046.8564224,
        "hectare": 1e4,
        "squareCentimetre": 1e-4,
        "squareFoot": 0.09290304,
        "squareInch": 0.00064516,
        "squareKilometre": 1e6,
        "squareMetre": 1.0,
        "squareMillimetre": 1e-6,
    },
    "CapacitanceUnit": {
        "farad": 1.0,
        "microfarad": 1e-6,
        "millifarad": 1e-3,
        "nanofarad": 1e-9,
        "picofarad": 1e-12,
    },
    "ChargeUnit": {"ampereHour": _HOUR, "coulomb": 1.0, "milliampereHour": 1e-3 * _HOUR},
    "CurrentUnit": {"ampere": 1.0, "kiloampere": 1e3, "microampere": 1e-6, "milliampere": 1e-3},
    "DataRateUnit": {
        **_binary("bitPerSecond", 1.0),
        **_binary("bytePerSecond", 8.0),
    },
    "DataSizeUnit": {**_binary("bit", 1.0), **_binary("byte", 8.0)},
    "DensityUnit": _DENSITY,
    "EnergyUnit": {
        "britishThermalUnit": _BTU,
        "electronvolt": 1.602176634e-19,
        "gigajoule": 1e9,
        "gigawattHour": 1e9 * _HOUR,
        "joule": 1.0,
        "kiloBritishThermalUnit": 1e3 * _BTU,
        "kilojoule": 1e3,
        "kilowattHour": 1e3 * _HOUR,
        "megaelectronvolt": 1.602176634e-13,
        "megajoule": 1e6,
        "megawattHour": 1e6 * _HOUR,
        "milliwattHour": 1e-3 * _HOUR,
        "terawattHour": 1e12 * _HOUR,
        "wattHour": _HOUR,
    },
    "ForceUnit": _FORCE,
    "FrequencyUnit": {"gigahertz": 1e9, "hertz": 1.0, "kilohertz": 1e3, "megahertz": 1e6, "millihertz": 1e-3},
    "IlluminanceUnit": {"footcandle": 1 / 0.09290304, "lux": 1.0},
    "InductanceUnit": {"henry": 1.0, "microhenry": 1e-6, "millihenry": 1e-3},
    "IonizingRadiationDoseUnit": {
        "gray": 1.0,
        "microgray": 1e-6,
        "milligray": 1e-3,
        "microsievert": 1e-6,
        "millisievert": 1e-3,
        "sievert": 1.0,
    },
    "IrradianceUnit": {"wattPerSquareMetre": 1.0},
    "LengthUnit": _LENGTH,
    "LuminanceUnit": {"candelaPerSquareMetre": 1.0},
    "LuminousFluxUnit": {"lumen": 1.0},
    "LuminousIntensityUnit": {"candela": 1.0},
    "MagneticFluxUnit": {"maxwell": 1e-8, "weber": 1.0},
    "MagneticInductionUnit": {"gauss": 1e-4, "tesla": 1.0},
    "MassUnit": {
        "gram": 1e-3,
        "kilogram": 1.0,
        "massPound": 0.45359237,
        "microgram": 1e-9,
        "milligram": 1e-6,
        "slug": _LBF / 0.3048,
        "tonne": 1e3,
    },
    "MassFlowRateUnit": {
        "gramPerHour": 1e-3 / _HOUR,
        "gramPerSecond": 1e-3,
        "kilogramPerHour": 1 / _HOUR,
        "kilogramPerSecond": 1.0,
        "massPoundPerHour": 0.45359237 / _HOUR,
    },
    "PowerUnit": _POWER,
    "PressureUnit": {
        "bar": 1e5,
        "decapascal": 10.0,
        "hectopascal": 100.0,
        "inchesOfMercury": 3386.38864,
        "inchesOfWater": 249.08891,
        "kilopascal": 1e3,
        "millibar": 100.0,
        "millimetresOfMercury": 133.322387415,
        "pascal": 1.0,
        "poundPerSquareInch": _LBF / 0.00064516,
    },
    "RadioactivityUnit": {"becquerel": 1.0, "gigabecquerel": 1e9, "kilobecquerel": 1e3, "megabecquerel": 1e6},
    "ReactiveEnergyUnit": {
        "gigavoltAmpereReactiveHour": 1e9 * _HOUR,
        "kilovoltAmpereReactiveHour": 1e3 * _HOUR,
        "megavoltAmpereReactiveHour": 1e6 * _HOUR,
        "voltAmpereReactiveHour": _HOUR,
    },
    "ReactivePowerUnit": {
        "gigavoltAmpereReactive": 1e9,
        "kilovoltAmpereReactive": 1e3,
        "megavoltAmpereReactive": 1e6,
        "millivoltAmpereReactive": 1e-3,
        "voltAmpereReactive": 1.0,
    },
    "ResistanceUnit": {"kiloohm": 1e3, "megaohm": 1e6, "milliohm": 1e-3, "ohm": 1.0},
    "SoundPressureUnit": {"bel": 1.0, "decibel": 0.1},
    "TemperatureUnit": {"degreeCelsius": 1.0, "degreeFahrenheit": 5 / 9, "kelvin": 1.0},
    "TimeUnit": {
        "day": 86400.0,
        "hour": _HOUR,
        "microsecond": 1e-6,
        "millisecond": 1e-3,
        "minute": 60.0,
        "nanosecond": 1e-9,
        "second": 1.0,
        "year": _YEAR,
    },
    "TorqueUnit": {"newtonMetre": 1.0},
    "Unitless": _UNITLESS,
    "VelocityUnit": {
        "centimetrePerSecond": 0.01,
        "kilometrePerHour": 1 / 3.6,
        "kilometrePerSecond": 1e3,
        "knot": 1852 / _HOUR,
        "metrePerHour": 1 / _HOUR,
        "metrePerSecond": 1.0,
        "milePerHour": 0.44704,
        "milePerSecond": 1609.344,
    },
    "VoltageUnit": {"kilovolt": 1e3, "megavolt": 1e6, "microvolt": 1e-6, "millivolt": 1e-3, "volt": 1.0},
    "VolumeUnit": {
        "cubicCentimetre": 1e-6,
        "cubicFoot": _CUBIC_FOOT,
        "cubicInch": 1.6387064e-5,
        "cubicMetre": 1.0,
        "fluidOunce": _GALLON / 128,
        "gallon": _GALLON,
        "litre": 1e-3,
        "millilitre": 1e-6,
    },
    "VolumeFlowRateUnit": {
        "cubicFootPerMinute": _CUBIC_FOOT / 60,
        "cubicMetrePerHour": 1 / _HOUR,
        "cubicMetrePerMinute": 1 / 60,
        "cubicMetrePerSecond": 1.0,
        "gallonPerHour": _GALLON / _HOUR,
        "gallonPerMinute": _GALLON / 60,
        "litrePerHour": 1e-3 / _HOUR,
        "litrePerMinute": 1e-3 / 60,
        "litrePerSecond": 1e-3,
        "millilitrePerHour": 1e-6 / _HOUR,
        "millilitrePerMinute": 1e-6 / 60,
        "millilitrePerSecond": 1e-6,
    },
}
_OFFSETS = {"degreeCelsius": 273.15, "degreeFahrenheit": 273.15 - 32 * 5 / 9}
_DIMENSIONS = {
    "microsievert": "EquivalentDose",
    "millisievert": "EquivalentDose",
    "sievert": "EquivalentDose",
}

#: DTDL semantic type -> the unit type whose units it accepts.
SEMANTIC_TYPES: Mapping[str, str] = MappingProxyType(
    {
        "Acceleration": "AccelerationUnit",
        "Angle": "AngleUnit",
        "AngularAcceleration": "AngularAccelerationUnit",
        "AngularVelocity": "AngularVelocityUnit",
        "ApparentEnergy": "ApparentEnergyUnit",
        "ApparentPower": "ApparentPowerUnit",
        "Area": "AreaUnit",
        "Capacitance": "CapacitanceUnit",
        "Concentration": "Unitless",
        "Current": "CurrentUnit",
        "DataRate": "DataRateUnit",
        "DataSize": "DataSizeUnit",
        "Density": "DensityUnit",
        "Distance": "LengthUnit",
        "ElectricCharge": "ChargeUnit",
        "Energy": "EnergyUnit",
        "EnergyRate": "PowerUnit",
        "Force": "ForceUnit",
        "Frequency": "FrequencyUnit",
        "Humidity": "DensityUnit",
        "Illuminance": "IlluminanceUnit",
        "Inductance": "InductanceUnit",
        "IonizingRadiationDose": "IonizingRadiationDoseUnit",
        "Irradiance": "IrradianceUnit",
        "Latitude": "AngleUnit",
        "Length": "LengthUnit",
        "Longitude": "AngleUnit",
        "Luminance": "LuminanceUnit",
        "Luminosity": "PowerUnit",
        "LuminousFlux": "LuminousFluxUnit",
        "LuminousIntensity": "LuminousIntensityUnit",
        "MagneticFlux": "MagneticFluxUnit",
        "MagneticInduction": "MagneticInductionUnit",
        "Mass": "MassUnit",
        "MassFlowRate": "MassFlowRateUnit",
        "Power": "PowerUnit",
        "Pressure": "PressureUnit",
        "Radioactivity": "RadioactivityUnit",
        "ReactiveEnergy": "ReactiveEnergyUnit",
        "ReactivePower": "ReactivePowerUnit",
        "RelativeDensity": "Unitless",
        "RelativeHumidity": "Unitless",
        "Resistance": "ResistanceUnit",
        "SoundPressure": "SoundPressureUnit",
        "Temperature": "TemperatureUnit",
        "Thrust": "ForceUnit",
        "TimeSpan": "TimeUnit",
        "Torque": "TorqueUnit",
        "Velocity": "VelocityUnit",
        "Voltage": "VoltageUnit",
        "Volume": "VolumeUnit",
        "VolumeFlowRate": "VolumeFlowRateUnit",
    }
)

#: Every unit by name.
UNITS: Mapping[str, Unit] = MappingProxyType(
    {
        name: Unit(name, unit_type, factor, _OFFSETS.get(name, 0.0), _DIMENSIONS.get(name, unit_type))
        for unit_type, table in _FACTORS.items()
        for name, factor in table.items()
    }
)


def unit_kind(unit: str) -> str | None:
    """Return the unit type of ``unit`` (e.g. ``"TemperatureUnit"``), or ``None`` if unknown."""
    found = UNITS.get(unit)
    return found.unit_type if found is not None else None


def units_for(semantic_type: str) -> frozenset[str]:
    """Return the unit names allowed for a semantic type (empty if the type is unknown)."""
    unit_type = SEMANTIC_TYPES.get(semantic_type)
    if unit_type is None:
        return frozenset()
    return frozenset(_FACTORS[unit_type])


def convert(value: float, from_unit: str, to_unit: str) -> float:
    """Convert ``value`` from one unit to another of the same kind.

    Raises :class:`Invalid` (rule ``"unit"``) for unknown units or units of different kinds.
    """
    source = UNITS.get(from_unit)
    target = UNITS.get(to_unit)
    if source is None:
        raise Invalid(f"unknown unit {from_unit!r}", unit=from_unit, rule="unit")
    if target is None:
        raise Invalid(f"unknown unit {to_unit!r}", unit=to_unit, rule="unit")
    if source.dimension != target.dimension:
        raise Invalid(
            f"cannot convert {from_unit!r} ({source.unit_type}) to {to_unit!r} ({target.unit_type})",
            unit=from_unit,
            rule="unit",
        )
    if from_unit == to_unit:
        return float(value)
    si = value * source.factor + source.offset
    return (si - target.offset) / target.factor
