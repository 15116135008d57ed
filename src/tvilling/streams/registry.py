"""Where capabilities register their sources, so that ``streams`` depends on none of them.

Each capability that has a feed to stream offers a ``register(registry)`` function that
adds a factory building its source from the composition's context (a platform); the
composition root (``tvilling.runtime``) calls them, the twin event feed first, and
builds the hub from what was registered::

    registry: SourceRegistry[Platform] = SourceRegistry()
    tvilling.twins.feed.register(registry)       # "events"
    tvilling.decisions.feed.register(registry)   # "commands"
    hub = ChangeHub(registry.build(platform))

>>> registry: SourceRegistry[str] = SourceRegistry()
>>> class Fixed:
...     def __init__(self, name: str) -> None:
...         self.name = name
...     def read(self, after: int, limit: int) -> list:
...         return []
>>> registry.register("events", Fixed)
>>> [s.name for s in registry.build("events")]
['events']
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Generic, TypeVar

from tvilling.core.errors import Conflict, Invalid
from tvilling.streams.source import Source

C = TypeVar("C")
_NAME = re.compile(r"[a-z][a-z0-9_]*")


class SourceRegistry(Generic[C]):
    """Named source factories, in registration order (the first is the one a bare cursor names)."""

    def __init__(self) -> None:
        self._factories: dict[str, Callable[[C], Source]] = {}

    def register(self, name: str, factory: Callable[[C], Source]) -> None:
        """Add the source ``name``, built by ``factory(context)``; a name is registered once."""
        if not _NAME.fullmatch(name):
            raise Invalid(f"a source name is lower-case letters, digits and '_', starting with a letter; got {name!r}",
                          field="name", rule="format")
        if name in self._factories:
            raise Conflict(f"a source named {name!r} is registered already", field="name", rule="duplicate")
        self._factories[name] = factory

    @property
    def names(self) -> list[str]:
        """The registered names, in order."""
        return list(self._factories)

    def build(self, context: C) -> list[Source]:
        """Every registered source, built for ``context``; each must carry the name it was registered under."""
        out: list[Source] = []
        for name, factory in self._factories.items():
            source = factory(context)
            if source.name != name:
                raise Invalid(f"the factory registered as {name!r} built a source named {source.name!r}",
                              field="name", rule="mismatch")
            out.append(source)
        return out
