"""The adapters every contract suite runs over, built in this one place.

Each fixture is parametrised by adapter (``memory``, ``sqlite``, ``postgres``; for the
command transports ``memory``, ``mqtt``, ``opcua``). A store over PostgreSQL lives in a
fresh schema that is dropped afterwards; MQTT runs through a Mosquitto of the test's own on
a free port; OPC UA through an asyncua server on loopback. When a store's constructor
changes, only this file changes.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from pgtest import PG_DSN, fresh_schema
from serve_util import mosquitto
from tvilling.analytics.binding.registry import AnalyticRegistry, MemoryRegistry, SqlRegistry
from tvilling.backend.cursors import PostgresCursors, SqliteCursors
from tvilling.connect.mqtt.gmqtt_transport import GmqttTransport
from tvilling.connect.mqtt.memory import MemoryBroker
from tvilling.connect.mqtt.port import (
    BatchTransport,
    MessageHandler,
    MqttTransport,
    Receiver,
    SessionOptions,
    parse_url,
)
from tvilling.ingest.deadletter import DeadLetterStore, MemoryDeadLetters, PostgresDeadLetters, SqliteDeadLetters
from tvilling.streams.offsets import CursorStore, MemoryCursors

from .command_rigs import Link, OpcUaPlant, loopback_link, mqtt_device, mqtt_link, opcua_link

STORES = ["memory", "sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
TRANSPORTS = ["memory", "mqtt", "opcua"]
MQTT_CLIENTS = ["memory", "gmqtt"]

#: ``make(client_id, subscriptions=(), handler=None, *, clean_start=False)``: an MQTT client, not yet entered
MqttFactory = Callable[..., MqttTransport]
#: ``make(client_id, subscriptions, receiver, *, clean_start=False, receive_maximum=1000)``: a batch client,
#: not yet entered
BatchFactory = Callable[..., BatchTransport]


@pytest.fixture
def pg_schema() -> Iterator[str]:
    yield from fresh_schema()


def _open_dead_letters(kind: str, folder: Path, schema: Callable[[], str]) -> DeadLetterStore:
    if kind == "memory":
        return MemoryDeadLetters()
    if kind == "sqlite":
        return SqliteDeadLetters(folder / "dead-letters.db")
    return PostgresDeadLetters(PG_DSN, schema=schema())


def _open_registry(kind: str, folder: Path, schema: Callable[[], str]) -> AnalyticRegistry:
    if kind == "memory":
        return MemoryRegistry()
    if kind == "sqlite":
        return SqlRegistry(folder / "analytics.db")
    return SqlRegistry(PG_DSN, schema=schema())


def _open_cursors(kind: str, folder: Path, schema: Callable[[], str]) -> CursorStore:
    if kind == "memory":
        return MemoryCursors()
    if kind == "sqlite":
        return SqliteCursors(folder / "tvilling.db")
    return PostgresCursors(PG_DSN, schema=schema())


@pytest.fixture(params=STORES)
def store_kind(request: pytest.FixtureRequest) -> str:
    """The store adapter under test; its stores are opened (and a PostgreSQL schema made) on demand."""
    kind: str = request.param
    return kind


@pytest.fixture
def open_dead_letters(store_kind: str, tmp_path: Path, request: pytest.FixtureRequest
                      ) -> Iterator[Callable[[], DeadLetterStore]]:
    """Opens the dead-letter store of this adapter; a second call opens the same store again (reopen)."""
    opened: list[DeadLetterStore] = []
    schema = _lazy_schema(store_kind, request)

    def open_() -> DeadLetterStore:
        store = _open_dead_letters(store_kind, tmp_path, schema)
        opened.append(store)
        return store

    yield open_
    for store in opened:
        with contextlib.suppress(Exception):  # closed by the test already
            store.close()


@pytest.fixture
def dead_letters(open_dead_letters: Callable[[], DeadLetterStore]) -> DeadLetterStore:
    return open_dead_letters()


@pytest.fixture
def open_registry(store_kind: str, tmp_path: Path, request: pytest.FixtureRequest
                  ) -> Iterator[Callable[[], AnalyticRegistry]]:
    """Opens the analytic registry of this adapter; a second call opens the same registry again (reopen)."""
    opened: list[AnalyticRegistry] = []
    schema = _lazy_schema(store_kind, request)

    def open_() -> AnalyticRegistry:
        registry = _open_registry(store_kind, tmp_path, schema)
        opened.append(registry)
        return registry

    yield open_
    for registry in opened:
        with contextlib.suppress(Exception):
            registry.close()


@pytest.fixture
def registry(open_registry: Callable[[], AnalyticRegistry]) -> AnalyticRegistry:
    return open_registry()


@pytest.fixture
def open_cursors(store_kind: str, tmp_path: Path, request: pytest.FixtureRequest
                 ) -> Iterator[Callable[[], CursorStore]]:
    """Opens the stream cursor store of this adapter; a second call opens the same store again (reopen)."""
    opened: list[CursorStore] = []
    schema = _lazy_schema(store_kind, request)

    def open_() -> CursorStore:
        store = _open_cursors(store_kind, tmp_path, schema)
        opened.append(store)
        return store

    yield open_
    for store in opened:
        close = getattr(store, "close", None)
        if callable(close):
            with contextlib.suppress(Exception):
                close()


@pytest.fixture
def cursors(open_cursors: Callable[[], CursorStore]) -> CursorStore:
    return open_cursors()


def _lazy_schema(kind: str, request: pytest.FixtureRequest) -> Callable[[], str]:
    def schema() -> str:
        name: str = request.getfixturevalue("pg_schema")
        return name

    return schema if kind == "postgres" else lambda: ""


@pytest.fixture(scope="module")
def opcua_plant() -> Iterator[OpcUaPlant]:
    plant = OpcUaPlant()
    yield plant
    plant.close()


@pytest.fixture(params=TRANSPORTS)
def open_link(request: pytest.FixtureRequest, tmp_path: Path
              ) -> Iterator[Callable[[], contextlib.AbstractAsyncContextManager[Link]]]:
    """``async with open_link() as link``: the command transport of this adapter, connected, devices behind it."""
    kind = request.param
    if kind == "memory":
        yield loopback_link
    elif kind == "mqtt":
        with mqtt_device(tmp_path) as device:

            def open_mqtt() -> contextlib.AbstractAsyncContextManager[Link]:
                return mqtt_link(device)

            yield open_mqtt
    else:
        plant: OpcUaPlant = request.getfixturevalue("opcua_plant")
        plant.reset()

        def open_opcua() -> contextlib.AbstractAsyncContextManager[Link]:
            return opcua_link(plant)

        yield open_opcua


@pytest.fixture(params=MQTT_CLIENTS)
def mqtt_client(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[MqttFactory]:
    """Clients of one broker: the in-memory one, or gmqtt against a Mosquitto of this test's own."""

    def options(client_id: str, clean_start: bool) -> SessionOptions:
        return SessionOptions(client_id=client_id, clean_start=clean_start, session_expiry_s=3600,
                              backoff_initial_s=0.05, backoff_max_s=0.2)

    if request.param == "memory":
        broker = MemoryBroker()
        address = parse_url("mqtt://127.0.0.1")

        def make_memory(client_id: str, subscriptions: tuple[tuple[str, int], ...] = (),
                        handler: MessageHandler | None = None, *, clean_start: bool = False) -> MqttTransport:
            return broker.transport(address, options(client_id, clean_start), subscriptions, handler)

        yield make_memory
        return
    with mosquitto(tmp_path) as url:

        def make_gmqtt(client_id: str, subscriptions: tuple[tuple[str, int], ...] = (),
                       handler: MessageHandler | None = None, *, clean_start: bool = False) -> MqttTransport:
            return GmqttTransport(parse_url(url), options(client_id, clean_start), subscriptions, handler)

        yield make_gmqtt


#: Options of the shipped broker configuration that a contract run leaves out: its own listener, no persistence
_NOT_FOR_TESTS = ("listener", "allow_anonymous", "persistence", "persistence_location", "persistence_file",
                  "autosave_interval", "autosave_on_changes")


def _shipped_flow_control() -> str:
    """The shipped Mosquitto configuration's queue, flow-control and logging lines (for ``serve_util.mosquitto``)."""
    shipped = Path(__file__).resolve().parents[2] / "deploy" / "mosquitto" / "tvilling.conf"
    lines = [line for line in shipped.read_text().splitlines()
             if line.strip() and not line.startswith("#") and line.split()[0] not in _NOT_FOR_TESTS]
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class BatchClients:
    """Clients of one broker for the batch port's contract: batch subscribers and plain publishers."""

    kind: str
    subscriber: BatchFactory
    publisher: MqttFactory


@pytest.fixture(params=MQTT_CLIENTS)
def mqtt_batch(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[BatchClients]:
    """The batch transport of this adapter: in memory, or gmqtt against a Mosquitto with the shipped flow control."""

    def options(client_id: str, clean_start: bool, receive_maximum: int = 1000) -> SessionOptions:
        return SessionOptions(client_id=client_id, clean_start=clean_start, session_expiry_s=3600,
                              receive_maximum=receive_maximum, backoff_initial_s=0.05, backoff_max_s=0.2)

    if request.param == "memory":
        broker = MemoryBroker()
        address = parse_url("mqtt://127.0.0.1")

        def batch_memory(client_id: str, subscriptions: tuple[tuple[str, int], ...], receiver: Receiver, *,
                         clean_start: bool = False, receive_maximum: int = 1000) -> BatchTransport:
            return broker.batch_transport(address, options(client_id, clean_start, receive_maximum), subscriptions,
                                          receiver=receiver)

        def publisher_memory(client_id: str) -> MqttTransport:
            return broker.transport(address, options(client_id, True))

        yield BatchClients("memory", batch_memory, publisher_memory)
        return
    with mosquitto(tmp_path, _shipped_flow_control()) as url:

        def batch_gmqtt(client_id: str, subscriptions: tuple[tuple[str, int], ...], receiver: Receiver, *,
                        clean_start: bool = False, receive_maximum: int = 1000) -> BatchTransport:
            return GmqttTransport(parse_url(url), options(client_id, clean_start, receive_maximum), subscriptions,
                                  receiver=receiver)

        def publisher_gmqtt(client_id: str) -> MqttTransport:
            return GmqttTransport(parse_url(url), options(client_id, True))

        yield BatchClients("gmqtt", batch_gmqtt, publisher_gmqtt)
