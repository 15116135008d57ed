"""Python values → OPC UA Variants of a node's declared type (for writes and method arguments).

>>> to_variant(1500, ua.VariantType.Double, field="M1.speed")
Variant(Value=1500.0, VariantType=<VariantType.Double: 11>, Dimensions=None, is_array=False)
>>> to_variant(70000, ua.VariantType.Int16, field="M1.mode")
Traceback (most recent call last):
...
tvilling.core.errors.Invalid: opcua: M1.mode: 70000 is out of range for Int16 [-32768, 32767]
"""

from __future__ import annotations

import math
from typing import Any

from asyncua import ua
from asyncua.common.ua_utils import data_type_to_variant_type

from tvilling.core.errors import Invalid

_INT_RANGES = {
    ua.VariantType.SByte: (-(2**7), 2**7 - 1), ua.VariantType.Byte: (0, 2**8 - 1),
    ua.VariantType.Int16: (-(2**15), 2**15 - 1), ua.VariantType.UInt16: (0, 2**16 - 1),
    ua.VariantType.Int32: (-(2**31), 2**31 - 1), ua.VariantType.UInt32: (0, 2**32 - 1),
    ua.VariantType.Int64: (-(2**63), 2**63 - 1), ua.VariantType.UInt64: (0, 2**64 - 1),
}
_FLOAT32_MAX = 3.4028234663852886e38


def to_variant(value: Any, vtype: ua.VariantType, *, field: str) -> ua.Variant:
    """``value`` as a Variant of ``vtype``, or ``Invalid`` saying why it does not fit."""
    if isinstance(value, list | tuple | dict):
        raise Invalid(f"opcua: {field}: arrays and structures are not supported, got {type(value).__name__}",
                      field=field, rule="type")
    if vtype == ua.VariantType.Variant:  # abstract type (BaseDataType, Number …): the value decides
        vtype = _guess(value, field)
    if vtype == ua.VariantType.Boolean:
        if not isinstance(value, bool):
            raise _type(field, value, vtype)
        return ua.Variant(value, vtype)
    if vtype in _INT_RANGES:
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            raise _type(field, value, vtype)
        low, high = _INT_RANGES[vtype]
        if not low <= value <= high:
            raise Invalid(f"opcua: {field}: {value} is out of range for {vtype.name} [{low}, {high}]", field=field,
                          rule="range")
        return ua.Variant(value, vtype)
    if vtype in (ua.VariantType.Float, ua.VariantType.Double):
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise _type(field, value, vtype)
        number = float(value)
        if vtype == ua.VariantType.Float and math.isfinite(number) and abs(number) > _FLOAT32_MAX:
            raise Invalid(f"opcua: {field}: {value} is out of range for Float", field=field, rule="range")
        return ua.Variant(number, vtype)
    if vtype == ua.VariantType.String:
        if not isinstance(value, str):
            raise _type(field, value, vtype)
        return ua.Variant(value, vtype)
    raise Invalid(f"opcua: {field}: writing OPC UA type {vtype.name} is not supported (numbers, booleans and "
                  "strings are)", field=field, rule="type")


async def argument_variant_type(client_node_for: Any, data_type: ua.NodeId) -> ua.VariantType:
    """The VariantType of a method argument's DataType (built-in, subtype or enumeration)."""
    if data_type.NamespaceIndex == 0 and isinstance(data_type.Identifier, int) and 1 <= data_type.Identifier <= 25:
        return ua.VariantType(data_type.Identifier)
    return await data_type_to_variant_type(client_node_for(data_type))


def _guess(value: Any, field: str) -> ua.VariantType:
    if isinstance(value, bool):
        return ua.VariantType.Boolean
    if isinstance(value, int):
        return ua.VariantType.Int32 if -(2**31) <= value < 2**31 else ua.VariantType.Int64
    if isinstance(value, float):
        return ua.VariantType.Double
    if isinstance(value, str):
        return ua.VariantType.String
    raise _type(field, value, ua.VariantType.Variant)


def _type(field: str, value: Any, vtype: ua.VariantType) -> Invalid:
    want = {ua.VariantType.Boolean: "a boolean", ua.VariantType.String: "a string",
            ua.VariantType.Float: "a number", ua.VariantType.Double: "a number",
            ua.VariantType.Variant: "a number, boolean or string"}.get(vtype, "an integer")
    return Invalid(f"opcua: {field}: the node is {vtype.name}, so the value must be {want}, got {value!r}",
                   field=field, rule="type")
