"""Collecting every problem of a model document before raising one error."""

from __future__ import annotations

from tvilling.core.errors import Invalid

#: At most this many problems are listed in one error; the rest are counted.
MAX_LISTED = 200


class Problems:
    """An accumulator of ``{"path", "feature", "message"}`` problems.

    >>> p = Problems()
    >>> p.add("$.contents[0].@type", "Historized", "Historized is not supported")
    >>> p.messages()
    ['$.contents[0].@type: Historized is not supported']
    """

    def __init__(self) -> None:
        self._items: list[dict[str, str]] = []
        self._count = 0

    def __len__(self) -> int:
        return self._count

    def add(self, path: str, feature: str, message: str) -> None:
        """Record that ``feature`` at JSON ``path`` breaks a rule described by ``message``."""
        self._count += 1
        if len(self._items) < MAX_LISTED:
            self._items.append({"path": path, "feature": feature, "message": f"{path}: {message}"})

    def messages(self) -> list[str]:
        """Return the full messages recorded so far."""
        return [item["message"] for item in self._items]

    def raise_if_any(self) -> None:
        """Raise one :class:`Invalid` listing every recorded problem, if there is any."""
        if not self._items:
            return
        more = self._count - 1
        message = self._items[0]["message"] + (f" (and {more} more)" if more else "")
        raise Invalid(message, errors=list(self._items), rule="model")
