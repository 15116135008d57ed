"""Which analytic, and which twins, a training or backtest run is about.

>>> choose_twins(("a1",), "b", ("b2",), lambda: iter([["b1", "b2", "c1"], ["b3"]]))
['a1', 'b1', 'b3']
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, Protocol

from tvilling.analytics.binding.spec import AnalyticSpec
from tvilling.core.errors import Invalid, NotFound

#: twins asked of a query per page while collecting a model's twins
PAGE = 1000


class SpecSource(Protocol):
    """What names the configured analytics (the analytics engine)."""

    @property
    def specs(self) -> Sequence[AnalyticSpec]:
        """Every enabled analytic."""

    def spec(self, name: str, /) -> AnalyticSpec | None:
        """The enabled analytic of that name, if any."""


class TwinQuery(Protocol):
    """What runs a twin query and answers a page (the twin service)."""

    def query(self, doc: Any, /) -> Any:
        """A page: ``items`` (twins with an ``id``) and ``next`` (a cursor position, or ``None``)."""


def find_spec(source: SpecSource, name: str) -> AnalyticSpec:
    """The configured analytic ``name``; :class:`NotFound` lists the configured ones."""
    spec = source.spec(name)
    if spec is None:
        raise NotFound(f"no analytic named {name!r} is configured; there are "
                       f"{', '.join(s.name for s in source.specs) or 'none'} (see [[analytics]] in "
                       "tvilling.toml)", analytic=name)
    return spec


def model_twin_pages(twins: TwinQuery, model: str) -> Iterator[list[str]]:
    """The ids of every twin of ``model``, a page at a time (through the local twin service)."""
    from tvilling.twins.query import encode_cursor

    doc: dict[str, Any] = {"model": model, "limit": PAGE}
    while True:
        page = twins.query(doc)
        yield [t.id for t in page.items]
        if page.next is None:
            return
        doc = {**doc, "cursor": encode_cursor(page.next)}


def choose_twins(twins: Iterable[str], prefix: str | None, exclude: Sequence[str],
                 pages: Callable[[], Iterable[list[str]]]) -> list[str]:
    """``twins``, then (with ``prefix``) every id of ``pages()`` that starts so, less those starting with an
    ``exclude`` prefix; in order, each once. :class:`Invalid` when that leaves none."""
    chosen = list(twins)
    if prefix is not None:
        for ids in pages():
            chosen.extend(t for t in ids if t.startswith(prefix))
    chosen = [t for t in chosen if not any(t.startswith(x) for x in exclude)]
    if not chosen:
        raise Invalid("name the twins: --twin ID (repeatable) and/or --prefix PREFIX"
                      + (" (--exclude left none)" if exclude else ""), field="twins", rule="required")
    return sorted(set(chosen), key=chosen.index)
