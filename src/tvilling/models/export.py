"""Exporting Interfaces as DTDL v3 JSON.

The stored document of an Interface is already normalised to DTDL v3 by the parser
(canonical ``@context``, inline Interfaces as references), so
``parse_models(to_dtdl(i))[0] == i`` for every parsed Interface ``i``.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from typing import Any

from tvilling.models.dtdl_care import COMMANDS_CONTEXT
from tvilling.models.dtdl_syntax import CONTEXT_V3
from tvilling.models.interface import Interface
from tvilling.models.units import QUANTITATIVE_TYPES_CONTEXT


def to_dtdl(interface: Interface) -> dict[str, Any]:
    """Return a DTDL v3 JSON document (a fresh copy) for ``interface``."""
    doc = copy.deepcopy(dict(interface.document))
    context = doc.get("@context")
    known = (QUANTITATIVE_TYPES_CONTEXT, COMMANDS_CONTEXT)
    extensions = [c for c in known if isinstance(context, list) and c in context]
    doc["@context"] = [CONTEXT_V3, *extensions] if extensions else CONTEXT_V3
    return {"@context": doc.pop("@context"), **doc}


def export_models(interfaces: Iterable[Interface]) -> list[dict[str, Any]]:
    """Return the DTDL v3 documents of ``interfaces`` (a list that ``parse_models`` accepts)."""
    return [to_dtdl(i) for i in interfaces]
