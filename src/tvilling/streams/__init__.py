"""Streams: the change hub, its sources, filters and cursors, and consumers with saved positions.

One module per concept:

* :mod:`.source` — a source of positioned JSON items (``Source``), and finding a feed's head;
* :mod:`.cursor` — cursors naming a position in every source (``events:12,commands:3``);
* :mod:`.filter` — which items a subscriber wants (``Filter``, ``parse_filter``);
* :mod:`.subscription` — a subscriber's bounded view of the hub (``Subscription``, ``SlowConsumer``);
* :mod:`.hub` — one poller per process fanning items out (``ChangeHub``);
* :mod:`.registry` — where capabilities register their sources (``SourceRegistry``);
* :mod:`.offsets` — saved consumer positions (``CursorStore``; the SQL adapters are the backend's);
* :mod:`.consumer` — ``async for batch in Consumer(...)``, resuming where it stopped.

This package depends on the core only: the twins, decisions and other capabilities
register their own sources (``tvilling.twins.feed.register`` …), and the composition root
(``tvilling.runtime``) builds the hub from them.
"""

from tvilling.streams.consumer import Batch, Consumer, Feed
from tvilling.streams.cursor import decode_cursor, encode_cursor
from tvilling.streams.filter import Filter, parse_filter
from tvilling.streams.hub import ChangeHub
from tvilling.streams.offsets import CursorStore, MemoryCursors
from tvilling.streams.registry import SourceRegistry
from tvilling.streams.source import Item, Source, find_head
from tvilling.streams.subscription import Change, SlowConsumer, Subscription

__all__ = [
    "Batch",
    "Change",
    "ChangeHub",
    "Consumer",
    "CursorStore",
    "Feed",
    "Filter",
    "Item",
    "MemoryCursors",
    "SlowConsumer",
    "Source",
    "SourceRegistry",
    "Subscription",
    "decode_cursor",
    "encode_cursor",
    "find_head",
    "parse_filter",
]
