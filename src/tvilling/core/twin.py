"""The twin: an asset's identity, model, attributes, reported/desired state and relationships.

A twin is an immutable value. It changes only by folding events through
:func:`tvilling.core.events.apply`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import msgspec

from tvilling.core.patch import delta


class Relationship(msgspec.Struct, frozen=True, kw_only=True):
    """A typed, directed edge from one twin to another."""

    id: str
    name: str
    target: str
    properties: dict[str, Any] = msgspec.field(default_factory=dict)


class Twin(msgspec.Struct, frozen=True, kw_only=True):
    """The state of one twin at one revision.

    ``metadata`` holds, per section (``reported``/``desired``) and property, the time,
    source and quality of the last write: ``{"reported": {"temperature": {"time": ..., ...}}}``.
    """

    id: str
    model: str
    revision: int
    created: datetime
    updated: datetime
    attributes: dict[str, Any] = msgspec.field(default_factory=dict)
    reported: dict[str, Any] = msgspec.field(default_factory=dict)
    desired: dict[str, Any] = msgspec.field(default_factory=dict)
    metadata: dict[str, Any] = msgspec.field(default_factory=dict)
    relationships: dict[str, Relationship] = msgspec.field(default_factory=dict)

    @property
    def etag(self) -> str:
        return f'"{self.revision}"'

    @property
    def delta(self) -> dict[str, Any]:
        """Desired values that are not reported yet."""
        return delta(self.desired, self.reported)

    def to_json(self) -> dict[str, Any]:
        """The API representation: plain JSON types, relationships as a list."""
        return {
            "id": self.id,
            "model": self.model,
            "revision": self.revision,
            "created": _iso(self.created),
            "updated": _iso(self.updated),
            "attributes": self.attributes,
            "reported": self.reported,
            "desired": self.desired,
            "delta": self.delta,
            "metadata": self.metadata,
            "relationships": [msgspec.to_builtins(r) for r in self.relationships.values()],
        }


def _iso(ts: datetime) -> str:
    return ts.isoformat().replace("+00:00", "Z")
