"""OPC UA transport against a real asyncua server on 127.0.0.1 (a small plant namespace).

The server runs in its own thread and event loop, so the client under test (in the test's
``asyncio.run``) talks to it over a real TCP socket exactly as it would to a PLC.
"""

from __future__ import annotations

import asyncio
import doctest
import importlib
import socket
import threading
import time
import tomllib
from collections.abc import Callable, Coroutine, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from asyncua import ua
from asyncua.server.server import Server
from asyncua.ua.object_ids import ObjectIds
from asyncua.ua.status_codes import StatusCodes

from tvilling.connect.opcua import (
    AutoMap,
    OpcUaCommands,
    OpcUaIngest,
    load_opcua_config,
    propose_bindings,
)
from tvilling.core.envelope import Envelope
from tvilling.core.errors import Invalid, NotFound, Unauthorized, Unavailable
from tvilling.ingest.ports import IngestResult, RawMessage

# -- a plant OPC UA server in a background thread ---------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PlantServer:
    """Objects/Line1/M1/{Speed, Mode, SetSpeed()}, Objects/Line1/M1/Bearing1/{Temperature, Vibration, Spectrum}."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.url = f"opc.tcp://127.0.0.1:{self.port}/tvilling/"
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name=f"opcua-plant-{self.port}", daemon=True)
        self.thread.start()
        self.nodes: dict[str, Any] = {}
        self.server: Server | None = None
        self.run(self._build())

    def run(self, coro: Coroutine[Any, Any, Any], timeout: float = 10) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    async def _build(self) -> None:
        server = Server()
        await server.init()
        server.set_endpoint(self.url)
        server.set_security_policy([ua.SecurityPolicyType.NoSecurity])
        idx = await server.register_namespace("urn:tvilling:test:plant")
        line = await server.nodes.objects.add_folder(idx, "Line1")
        m1 = await line.add_object(idx, "M1")
        bearing = await m1.add_object(idx, "Bearing1")
        n = self.nodes
        n["speed"] = await m1.add_variable(idx, "Speed", 1500.0, varianttype=ua.VariantType.Double)
        n["mode"] = await m1.add_variable(idx, "Mode", 1, varianttype=ua.VariantType.Int32)
        n["temperature"] = await bearing.add_variable(idx, "Temperature", 60.0, varianttype=ua.VariantType.Double)
        n["vibration"] = await bearing.add_variable(idx, "Vibration", 0.5, varianttype=ua.VariantType.Float)
        n["spectrum"] = await bearing.add_variable(idx, "Spectrum", [0.1, 0.2, 0.3], varianttype=ua.VariantType.Double)
        for key in ("speed", "mode", "vibration"):
            await n[key].set_writable()

        async def set_speed(parent: ua.NodeId, speed: ua.Variant) -> list[ua.Variant] | ua.CallMethodResult:
            if speed.Value < 0:  # the spec's way: the call is BadInvalidArgument, the argument says why
                return ua.CallMethodResult(StatusCode=_status(StatusCodes.BadInvalidArgument),
                                           InputArgumentResults=[_status(StatusCodes.BadOutOfRange)])
            previous = await n["speed"].read_value()
            await n["speed"].write_value(ua.Variant(float(speed.Value), ua.VariantType.Double))
            return [ua.Variant(float(previous), ua.VariantType.Double)]

        speed_in = ua.Argument(Name="speed", DataType=ua.NodeId(ua.Int32(ObjectIds.Double)), ValueRank=-1)
        previous_out = ua.Argument(Name="previous", DataType=ua.NodeId(ua.Int32(ObjectIds.Double)), ValueRank=-1)
        n["set_speed"] = await m1.add_method(idx, "SetSpeed", set_speed, [speed_in], [previous_out])
        self.server = server
        await server.start()

    async def _set(self, key: str, dv: ua.DataValue) -> None:
        await self.nodes[key].write_value(dv)

    def set(self, key: str, value: Any, vtype: ua.VariantType = ua.VariantType.Double, *,
            status: int = StatusCodes.Good, source_ts: datetime | None = None) -> None:
        dv = ua.DataValue(ua.Variant(value, vtype), StatusCode=_status(status), SourceTimestamp=_stamp(source_ts),
                          ServerTimestamp=_stamp(datetime.now(UTC)))
        self.run(self._set(key, dv))

    def get(self, key: str) -> Any:
        return self.run(self.nodes[key].read_data_value())

    def stop(self) -> None:
        if self.server is not None:
            self.run(self.server.stop())

    def start(self) -> None:
        assert self.server is not None
        self.run(self.server.start())

    def close(self) -> None:
        try:
            self.stop()
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(5)
            self.loop.close()


def _status(code: int) -> ua.StatusCode:
    return ua.StatusCode(ua.UInt32(code))


def _stamp(ts: datetime | None) -> Any:
    return ts  # asyncua types timestamps as its own DateTime; a datetime is what it takes


@pytest.fixture(scope="module")
def plant() -> Iterator[PlantServer]:
    server = PlantServer()
    yield server
    server.close()


# -- a recording sink: our own ingest port, faked --------------------------------------------------------------


class RecordingSink:
    def __init__(self, delay: float = 0.0) -> None:
        self.envelopes: list[Envelope] = []
        self.rejects: list[tuple[RawMessage, str, str]] = []
        self.calls = 0
        self.delay = delay

    async def ingest(self, envelopes: Any, *, raw: RawMessage | None = None) -> IngestResult:
        if self.delay:
            await asyncio.sleep(self.delay)
        self.calls += 1
        self.envelopes.extend(envelopes)
        return IngestResult(accepted=sum(len(e.values) for e in envelopes))

    async def reject(self, raw: RawMessage, reason: str, *, rule: str = "translate") -> None:
        self.rejects.append((raw, reason, rule))

    def readings(self, twin: str, prop: str) -> list[tuple[datetime, Any, str | None]]:
        return [(e.ts, e.values[prop], e.quality) for e in self.envelopes if e.twin == twin and prop in e.values]

    async def wait_for(self, predicate: Callable[[], bool], timeout: float = 5.0) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out; envelopes={self.envelopes[-5:]} rejects={self.rejects}")
            await asyncio.sleep(0.01)


def config(url: str, *bindings: tuple[str, str, str], **extra: Any) -> dict[str, Any]:
    return {
        "endpoint": {"url": url, "timeout_s": 2.0},
        "bindings": [{"node": node, "twin": twin, "property": prop, "sampling_ms": 10}
                     for node, twin, prop in bindings],
        "methods": [{"twin": "M1", "command": "setSpeed", "object": "Objects/Line1/M1",
                     "method": "Objects/Line1/M1/SetSpeed"}],
        "publishing_ms": 20, "reconnect_min_s": 0.1, "reconnect_max_s": 0.5, **extra,
    }


TEMP = ("Objects/Line1/M1/Bearing1/Temperature", "B1", "temperature")
VIB = ("Objects/Line1/M1/Bearing1/Vibration", "B1", "vibration")
SPEED = ("Objects/Line1/M1/Speed", "M1", "speed")
MODE = ("Objects/Line1/M1/Mode", "M1", "mode")
SPECTRUM = ("Objects/Line1/M1/Bearing1/Spectrum", "B1", "spectrum")


# -- config -----------------------------------------------------------------------------------------------------


def test_config_from_toml_with_defaults() -> None:
    doc = tomllib.loads("""
        endpoint = "opc.tcp://plc.local:4840/plant"
        publishing_ms = 250
        [[bindings]]
        node = "ns=2;s=Line1.M1.Bearing1.Temperature"
        twin = "B1"
        property = "temperature"
        deadband = 0.2
        [[methods]]
        twin = "M1"
        command = "setSpeed"
        object = "Objects/2:Line1/2:M1"
        method = "Objects/2:Line1/2:M1/2:SetSpeed"
    """)
    cfg = load_opcua_config(doc)
    assert cfg.endpoint.url == "opc.tcp://plc.local:4840/plant"
    assert (cfg.publishing_ms, cfg.bindings[0].sampling_ms, cfg.bindings[0].deadband) == (250, 100.0, 0.2)
    assert cfg.envelope_source == "opcua:opc.tcp://plc.local:4840/plant"


@pytest.mark.parametrize(("doc", "field", "words"), [
    ({"endpoint": "tcp://x:1"}, "endpoint.url", "opc.tcp://"),
    ({"endpoint": {"url": "opc.tcp://x:1", "security_policy": "Basic256Sha256"}}, "endpoint.certificate",
     "certificate"),
    ({"endpoint": {"url": "opc.tcp://x:1", "security_policy": "Rot13"}}, "endpoint.security_policy", "one of"),
    ({"endpoint": "opc.tcp://x:1", "bindings": [{"node": "A/B", "twin": "b 1", "property": "t"}]},
     "bindings[0].twin", "twin id"),
    ({"endpoint": "opc.tcp://x:1", "bindings": [{"node": "A/B", "twin": "B1", "property": "t"},
                                                {"node": "A/C", "twin": "B1", "property": "t"}]},
     "bindings[1]", "again"),
    ({"endpoint": "opc.tcp://x:1", "bindings": [{"node": "ns=x;s=1", "twin": "B1", "property": "t"}]},
     "bindings[0].node", "node id"),
    ({"endpoint": "opc.tcp://x:1", "bindings": [{"node": "A//B", "twin": "B1", "property": "t"}]},
     "bindings[0].node", "empty segment"),
    ({"endpoint": "opc.tcp://x:1", "bindings": [{"node": "A", "twin": "B1", "property": "t", "sampling_ms": -1}]},
     "bindings[0].sampling_ms", "positive"),
    ({"endpoint": "opc.tcp://x:1", "bindings": [{"node": "A", "twin": "B1"}]}, "bindings[0]", "property"),
    ({"endpoint": "opc.tcp://x:1", "batch": 3}, "opcua", "unknown field"),
])
def test_config_errors_name_the_field(doc: dict[str, Any], field: str, words: str) -> None:
    with pytest.raises(Invalid) as err:
        load_opcua_config(doc)
    assert words in err.value.message
    assert err.value.fields["field"] == field


def test_password_is_not_in_repr() -> None:
    cfg = load_opcua_config({"endpoint": {"url": "opc.tcp://op:secret@x:1", "username": "op", "password": "secret"}})
    assert "secret" not in repr(cfg.endpoint)
    assert "secret" not in cfg.envelope_source


@pytest.mark.parametrize("name", ["config", "status", "translate", "values"])
def test_docstring_examples(name: str) -> None:
    result = doctest.testmod(importlib.import_module(f"tvilling.connect.opcua.{name}"))
    assert result.attempted > 0 and result.failed == 0


# -- against the plant server -----------------------------------------------------------------------------------


def test_browse_lists_children_with_types(plant: PlantServer) -> None:
    async def main() -> None:
        async with OpcUaCommands(config(plant.url)) as opc:
            entries = {e.name: e for e in await opc.browse("Objects/Line1/M1")}
            assert set(entries) == {"Speed", "Mode", "Bearing1", "SetSpeed"}
            assert (entries["Speed"].node_class, entries["Speed"].data_type) == ("Variable", "Double")
            assert (entries["Mode"].data_type, entries["SetSpeed"].node_class) == ("Int32", "Method")
            assert entries["Bearing1"].node_class == "Object"
            # an entry's path and node id both work as a binding's node
            deeper = await opc.browse(entries["Bearing1"].path)
            assert {e.name for e in deeper} == {"Temperature", "Vibration", "Spectrum"}
            assert [e.name for e in await opc.browse(entries["Bearing1"].node_id)] == [e.name for e in deeper]
            with pytest.raises(NotFound, match="no child 'M9'"):
                await opc.browse("Objects/Line1/M9")

    asyncio.run(main())


def test_subscription_delivers_envelopes(plant: PlantServer) -> None:
    sink = RecordingSink()

    async def main() -> None:
        async with OpcUaIngest(sink, config(plant.url, TEMP, VIB, SPEED)) as ingest:
            # the initial values of all three bindings arrive first
            await sink.wait_for(lambda: {"temperature", "vibration", "speed"} <= {k for e in sink.envelopes
                                                                                 for k in e.values})
            t = datetime(2026, 3, 1, 12, 0, 0, 250_000, tzinfo=UTC)
            plant.set("temperature", 75.5, source_ts=t)
            await sink.wait_for(lambda: any(v == 75.5 for _, v, _ in sink.readings("B1", "temperature")))
            stats = ingest.stats
            assert "Bearing1" in {e.name for e in await ingest.browse("Objects/Line1/M1")}
        env = next(e for e in sink.envelopes if e.values.get("temperature") == 75.5)
        assert (env.twin, env.ts, env.quality) == ("B1", t, "good")
        assert env.source == f"opcua:{plant.url}"
        assert sink.readings("B1", "vibration")[0][1] == pytest.approx(0.5)
        assert sink.readings("M1", "speed")[0][1:] == (1500.0, "good")
        assert stats.delivered == sum(len(e.values) for e in sink.envelopes) and stats.rejected == 0
        assert sink.calls == stats.batches < stats.notifications + 1

    asyncio.run(main())


def test_status_codes_become_quality_and_server_timestamp_is_the_fallback(plant: PlantServer) -> None:
    sink = RecordingSink()

    async def main() -> None:
        async with OpcUaIngest(sink, config(plant.url, TEMP)):
            await sink.wait_for(lambda: bool(sink.envelopes))
            t = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=5)
            plant.set("temperature", 81.0, status=StatusCodes.UncertainLastUsableValue, source_ts=t)
            await sink.wait_for(lambda: any(q == "uncertain" for *_, q in sink.readings("B1", "temperature")))
            plant.set("temperature", 82.0, status=StatusCodes.BadSensorFailure, source_ts=t + timedelta(seconds=1))
            await sink.wait_for(lambda: any(q == "bad" for *_, q in sink.readings("B1", "temperature")))
            before = datetime.now(UTC)
            plant.set("temperature", 83.0)  # no source timestamp: the server's time is used
            await sink.wait_for(lambda: any(v == 83.0 for _, v, _ in sink.readings("B1", "temperature")))
        readings = sink.readings("B1", "temperature")
        assert (t, 81.0, "uncertain") in readings
        bad = next(r for r in readings if r[2] == "bad")
        assert bad[0] == t + timedelta(seconds=1)
        assert bad[1] in (82.0, None)  # a server may drop the value of a Bad DataValue; the reading still comes
        ts83 = next(ts for ts, v, _ in readings if v == 83.0)
        assert before - timedelta(seconds=1) <= ts83 <= datetime.now(UTC)

    asyncio.run(main())


def test_unsupported_type_is_rejected_not_dropped(plant: PlantServer) -> None:
    sink = RecordingSink()

    async def main() -> None:
        async with OpcUaIngest(sink, config(plant.url, TEMP, SPECTRUM)) as ingest:
            await sink.wait_for(lambda: bool(sink.rejects) and bool(sink.envelopes))
            assert ingest.stats.rejected == 1
        raw, reason, rule = sink.rejects[0]
        assert (raw.transport, raw.address, rule) == ("opcua", SPECTRUM[0], "unsupported_type")
        assert "B1.spectrum" in reason and "arrays are not supported" in reason
        assert raw.payload  # the DataValue in OPC UA binary encoding
        assert all("spectrum" not in e.values for e in sink.envelopes)

    asyncio.run(main())


def test_write_back_uses_the_node_data_type(plant: PlantServer) -> None:
    async def main() -> None:
        async with OpcUaCommands(config(plant.url, TEMP, VIB, MODE)) as opc:
            await opc.write("B1", "vibration", 2)  # an int, written as the node's Float
            dv = plant.get("vibration")
            assert (dv.Value.VariantType, dv.Value.Value) == (ua.VariantType.Float, 2.0)
            await opc.write("M1", "mode", 3.0)  # an integral float, written as Int32
            dv = plant.get("mode")
            assert (dv.Value.VariantType, dv.Value.Value) == (ua.VariantType.Int32, 3)
            with pytest.raises(Invalid, match="must be an integer"):
                await opc.write("M1", "mode", 2.5)
            with pytest.raises(Invalid, match="out of range for Int32"):
                await opc.write("M1", "mode", 2**40)
            with pytest.raises(Unauthorized) as err:
                await opc.write("B1", "temperature", 20.0)  # read-only on the server
            assert err.value.fields["status"] in ("BadNotWritable", "BadUserAccessDenied")
            assert err.value.fields["twin"] == "B1" and err.value.fields["status_code"].startswith("0x80")
            with pytest.raises(NotFound, match=r"no binding for B1\.pressure"):
                await opc.write("B1", "pressure", 1.0)
        plant.set("mode", 1, ua.VariantType.Int32)

    asyncio.run(main())


def test_method_call_round_trip_is_observed_through_the_subscription(plant: PlantServer) -> None:
    sink = RecordingSink()
    plant.set("speed", 1500.0)

    async def main() -> None:
        cfg = config(plant.url, SPEED)
        async with OpcUaIngest(sink, cfg), OpcUaCommands(cfg) as opc:
            await sink.wait_for(lambda: bool(sink.readings("M1", "speed")))
            assert await opc.call("M1", "setSpeed", [1200]) == [1500.0]
            await sink.wait_for(lambda: any(v == 1200.0 for _, v, _ in sink.readings("M1", "speed")))
            assert plant.get("speed").Value.Value == 1200.0
            assert await opc.call("M1", "setSpeed", {"speed": 1000.0}) == [1200.0]
            with pytest.raises(Invalid) as err:
                await opc.call("M1", "setSpeed", [-5.0])  # the method itself refuses the argument
            assert err.value.fields["status"] == "BadInvalidArgument" and err.value.fields["command"] == "setSpeed"
            assert err.value.fields["arguments"] == "speed: BadOutOfRange"
            with pytest.raises(Invalid, match="takes 1 argument"):
                await opc.call("M1", "setSpeed", [])
            with pytest.raises(Invalid, match="missing"):
                await opc.call("M1", "setSpeed", {"rpm": 3})
            with pytest.raises(NotFound):
                await opc.call("M1", "explode", [])
            await sink.wait_for(lambda: sink.readings("M1", "speed")[-1][1] == 1000.0)
        assert [v for _, v, _ in sink.readings("M1", "speed")] == [1500.0, 1200.0, 1000.0]

    asyncio.run(main())


def test_slow_sink_gets_every_value_in_order(plant: PlantServer) -> None:
    """Back-pressure, not loss: with a 1-message buffer and a slow sink, all 300 changes arrive in order."""
    sink = RecordingSink(delay=0.02)
    values = [100.0 + i for i in range(300)]

    async def main() -> None:
        cfg = config(plant.url, TEMP, queue_max=1, item_queue_size=1000, batch_max=50)
        async with OpcUaIngest(sink, cfg) as ingest:
            await sink.wait_for(lambda: bool(sink.envelopes))
            t0 = datetime(2026, 1, 1, tzinfo=UTC)
            plant.run(_write_many(plant.nodes["temperature"], values, t0))
            await sink.wait_for(lambda: any(v == values[-1] for _, v, _ in sink.readings("B1", "temperature")), 10)
            assert ingest.stats.overflows == 0
        got = [v for _, v, _ in sink.readings("B1", "temperature")]
        assert got[got.index(values[0]):] == values

    asyncio.run(main())


async def _write_many(node: Any, values: list[float], t0: datetime) -> None:
    for i, v in enumerate(values):
        await node.write_value(ua.DataValue(ua.Variant(v, ua.VariantType.Double),
                                            SourceTimestamp=_stamp(t0 + timedelta(milliseconds=i))))
        if i % 50 == 0:
            await asyncio.sleep(0)


class FlakySink(RecordingSink):
    """Fails its first ``failures`` ingest calls, as a store that is briefly unreachable would."""

    def __init__(self, failures: int) -> None:
        super().__init__()
        self.failures = failures

    async def ingest(self, envelopes: Any, *, raw: RawMessage | None = None) -> IngestResult:
        if self.failures:
            self.failures -= 1
            raise Unavailable("store briefly unreachable")
        return await super().ingest(envelopes, raw=raw)


def test_a_failing_sink_is_retried_not_skipped(plant: PlantServer) -> None:
    sink = FlakySink(failures=2)
    plant.set("temperature", 64.0)

    async def main() -> None:
        async with OpcUaIngest(sink, config(plant.url, TEMP)) as ingest:
            await sink.wait_for(lambda: bool(sink.envelopes))
            assert ingest.stats.sink_retries == 2
        assert sink.readings("B1", "temperature")[0][1] == 64.0

    asyncio.run(main())


def test_unknown_binding_fails_on_enter(plant: PlantServer) -> None:
    async def main() -> None:
        with pytest.raises(NotFound, match=r"1 binding\(s\) cannot be subscribed.*bindings\[1\].*'Pressure'"):
            async with OpcUaIngest(RecordingSink(), config(plant.url, TEMP, ("Objects/Line1/M1/Pressure", "M1",
                                                                             "pressure"))):
                pass

    asyncio.run(main())


def test_unreachable_server_is_unavailable() -> None:
    async def main() -> None:
        with pytest.raises(Unavailable):
            async with OpcUaIngest(RecordingSink(), config(f"opc.tcp://127.0.0.1:{free_port()}/", TEMP)):
                pass

    asyncio.run(main())


def test_auto_map_proposes_for_a_person_to_confirm(plant: PlantServer) -> None:
    async def main() -> AutoMap:
        async with OpcUaCommands(config(plant.url)) as opc:
            return await propose_bindings(opc, "Objects/Line1")

    proposal = asyncio.run(main())
    found = {(p.binding.twin, p.binding.property): p for p in proposal.bindings}
    assert set(found) == {("M1", "speed"), ("M1", "mode"), ("Bearing1", "temperature"), ("Bearing1", "vibration"),
                          ("Bearing1", "spectrum")}
    assert found["M1", "speed"].note is None and found["M1", "speed"].data_type == "Double"
    assert "cannot be ingested" in (found["Bearing1", "spectrum"].note or "")
    assert [(m.binding.twin, m.binding.command) for m in proposal.methods] == [("M1", "setSpeed")]
    accepted = proposal.to_config()
    assert len(accepted["bindings"]) == 4 and accepted["methods"][0]["command"] == "setSpeed"
    # what a person accepts is a valid config that binds to the server as proposed
    load_opcua_config({"endpoint": plant.url, **accepted})


def test_reconnects_and_resubscribes_after_server_restart() -> None:
    plant = PlantServer()
    sink = RecordingSink()
    try:
        async def main() -> None:
            async with OpcUaIngest(sink, config(plant.url, TEMP)) as ingest:
                await sink.wait_for(lambda: bool(sink.envelopes))
                plant.set("temperature", 61.0)
                await sink.wait_for(lambda: any(v == 61.0 for _, v, _ in sink.readings("B1", "temperature")))
                await asyncio.to_thread(plant.stop)
                await sink.wait_for(lambda: not ingest.connected, 5)
                with pytest.raises(Unavailable):
                    await ingest.browse("Objects")
                await asyncio.to_thread(plant.start)
                await ingest.wait_connected(5)
                plant.set("temperature", 62.0)
                await sink.wait_for(lambda: any(v == 62.0 for _, v, _ in sink.readings("B1", "temperature")))
                assert (ingest.stats.connects, ingest.stats.connection_losses) == (2, 1)

        asyncio.run(main())
    finally:
        plant.close()


def test_serve_ingests_from_an_opcua_server(plant: PlantServer, tmp_path: Any) -> None:
    """`tvilling serve --opcua CONFIG` subscribes to the bound nodes and updates the twin."""
    import os
    import signal
    import subprocess
    import sys

    from serve_util import call, wait_healthy
    from tvilling.models.builtin import builtin_documents

    conf = tmp_path / "opcua.toml"
    conf.write_text(f'endpoint = "{plant.url}"\n[[bindings]]\nnode = "Objects/Line1/M1/Bearing1/Temperature"\n'
                    'twin = "B1"\nproperty = "temperature"\n')
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    data = tmp_path / "d"
    from tvilling.app import build_platform
    from tvilling.config import Settings

    with build_platform(Settings(data_dir=data)) as p:  # the twin exists before the server subscribes
        p.models.add(builtin_documents("plant"))
        p.twins.put("B1", {"model": "dtmi:tvilling:example:Bearing;1"})
    proc = subprocess.Popen([sys.executable, "-m", "tvilling.cli", "serve", "--data-dir", str(data), "--port",
                             str(port), "--opcua", str(conf)], cwd=tmp_path,
                            env={**os.environ, "TVILLING_LOG_LEVEL": "warning"},
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        wait_healthy(base)
        plant.set("temperature", 77.25)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            reported = call("GET", f"{base}/api/twins/B1")[1]["reported"]
            if reported.get("temperature") == 77.25:
                break
            time.sleep(0.2)
        assert reported.get("temperature") == 77.25, reported
    finally:
        proc.send_signal(signal.SIGTERM)
        out = proc.communicate(timeout=20)[0].decode()
        plant.set("speed", 1500.0)  # the server is shared by the module's tests
    assert "Traceback" not in out, out


def test_serve_closes_the_loop_over_opcua_desired_written_then_reported(plant: PlantServer, tmp_path: Any) -> None:
    """A desired value is written to the bound node; the subscription reports it back; reconciled."""
    import os
    import signal
    import subprocess
    import sys

    from serve_util import call, wait_healthy
    from tvilling.app import build_platform
    from tvilling.config import Settings
    from tvilling.models.builtin import builtin_documents

    conf = tmp_path / "opcua.toml"
    conf.write_text(f'endpoint = "{plant.url}"\n[[bindings]]\nnode = "Objects/Line1/M1/Speed"\n'
                    'twin = "M1"\nproperty = "speedSetpoint"\n')
    data = tmp_path / "d"
    with build_platform(Settings(data_dir=data)) as p:
        p.models.add(builtin_documents("plant"))
        p.twins.put("M1", {"model": "dtmi:tvilling:example:Machine;1"})
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen([sys.executable, "-m", "tvilling.cli", "serve", "--data-dir", str(data), "--port",
                             str(port), "--opcua", str(conf)], cwd=tmp_path,
                            env={**os.environ, "TVILLING_LOG_LEVEL": "warning"},
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        wait_healthy(base)
        assert call("PATCH", f"{base}/api/twins/M1", {"desired": {"speedSetpoint": 1234.0}})[0] == 200
        deadline = time.monotonic() + 20
        twin: dict[str, Any] = {}
        while time.monotonic() < deadline:
            twin = call("GET", f"{base}/api/twins/M1")[1]
            if twin["reported"].get("speedSetpoint") == 1234.0:
                break
            time.sleep(0.2)
        assert plant.get("speed").Value.Value == 1234.0  # the device obeyed
        assert twin["reported"].get("speedSetpoint") == 1234.0 and twin["delta"] == {}, twin
    finally:
        proc.send_signal(signal.SIGTERM)
        out = proc.communicate(timeout=20)[0].decode()
        plant.set("speed", 1500.0)  # the server is shared by the module's tests
    assert "Traceback" not in out, out
