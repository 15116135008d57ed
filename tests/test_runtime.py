"""The runtime: its units built from settings, started and stopped as one, headless with a real broker."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest

from serve_util import mosquitto
from tvilling.app import build_platform
from tvilling.backend import open_settings_backend
from tvilling.config import Settings
from tvilling.connect.mqtt.identity import claim_identity
from tvilling.core.errors import Conflict, Unavailable
from tvilling.models.builtin import builtin_documents
from tvilling.runtime import Runtime

BEARING = "dtmi:tvilling:example:Bearing;1"
RULES = [{"name": "bearing-hot", "model": BEARING, "property": "temperature", "kind": "threshold",
          "severity": "major", "above": 80, "clear": 75}]


def run(coro: Any, timeout: float = 60.0) -> Any:
    async def main() -> Any:
        return await asyncio.wait_for(coro, timeout)

    return asyncio.run(main())


async def until(predicate: Any, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not await asyncio.to_thread(predicate):
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.05)


def publish(url: str, readings: list[tuple[str, dict[str, float]]]) -> None:
    """Publish telemetry with QoS 1 as a device would, waiting until the broker has each message."""
    host, port = url.removeprefix("mqtt://").split(":")
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="runtime-test-device")
    client.connect(host, int(port))
    client.loop_start()
    try:
        for twin, values in readings:
            body = json.dumps({"ts": datetime.now(UTC).isoformat(), "values": values})
            client.publish(f"tvilling/{twin}/telemetry", body, qos=1).wait_for_publish(10)
    finally:
        client.loop_stop()
        client.disconnect()


def test_the_units_follow_the_settings_and_nothing_starts_at_construction(tmp_path: Path) -> None:
    bare = Runtime(build_platform(Settings(store="memory")))
    assert bare.units == ["hub"] and bare.commands is None and bare.alarm_driver is None
    assert not bare.hub.running and not bare.running
    full = Runtime(build_platform(Settings(data_dir=tmp_path / "d", broker="mqtt://127.0.0.1:1", alarm_rules=RULES)))
    assert full.units == ["hub", "upkeep", "mqtt-identity", "mqtt-ingest", "commands", "alarms"]
    assert full.commands is not None and full.alarm_driver is not None
    assert not (tmp_path / "d" / "mqtt-identity").exists()  # claimed when it starts, not when built
    full.platform.close()
    bare.platform.close()


def test_a_runtime_starts_and_stops_its_units_in_order_and_can_run_again() -> None:
    platform = build_platform(Settings(store="memory", alarm_rules=RULES))
    platform.models.add(builtin_documents("plant"))
    runtime = Runtime(platform, hub_options={"busy_interval": 0.01, "idle_interval": 0.05})

    async def once(temperature: float) -> list[str]:
        async with runtime:
            assert runtime.running and runtime.hub.running
            with pytest.raises(RuntimeError, match="running already"):
                await runtime.__aenter__()
            assert "tvilling-alarms" not in {t.name for t in threading.enumerate()}  # no thread of its own
            await asyncio.to_thread(platform.twins.put, "B1", {"model": BEARING,
                                                               "reported": {"temperature": temperature}})
            await until(lambda: platform.alarm_store.list(twin="B1", limit=10))
        assert not runtime.running and not runtime.hub.running
        assert platform._stored_listeners == []  # its listener left with it
        return [a.state for a in platform.alarm_store.list(twin="B1", limit=10)]

    assert run(once(91.0)) == ["active"]
    assert run(once(91.0)) == ["active"]  # again: the same runtime resumes where its alarm cursor stopped
    assert platform.alarm_store.cursor("engine") >= 1
    platform.close()


def test_a_headless_runtime_ingests_from_mqtt_stores_readings_and_raises_an_alarm(tmp_path: Path) -> None:
    with mosquitto(tmp_path) as url:
        settings = Settings(data_dir=tmp_path / "data", broker=url, alarm_rules=RULES, maintenance_s=0.5)
        seed = build_platform(settings)
        seed.models.add(builtin_documents("plant"))
        seed.twins.put("B1", {"model": BEARING}, actor="test")
        seed.close()
        runtime = Runtime.from_settings(settings, hub_options={"busy_interval": 0.01, "idle_interval": 0.1})
        platform = runtime.platform

        async def main() -> int | None:
            async with runtime:  # no HTTP app anywhere
                with pytest.raises(Conflict):  # the running runtime holds the data directory's MQTT identity
                    claim_identity(settings.data_dir)
                await asyncio.sleep(0.3)  # the subscription is in place
                await asyncio.to_thread(publish, url, [("B1", {"temperature": 60.0}), ("B1", {"temperature": 70.0}),
                                                       ("B1", {"temperature": 92.0})])
                await until(lambda: platform.history.last("B1", "temperature") is not None
                            and platform.history.last("B1", "temperature").value == 92.0)
                await until(lambda: platform.alarm_store.list(twin="B1", state="active", limit=10))
                assert runtime.mqtt_ingest is not None and runtime.mqtt_ingest.ingest is not None
                [alarm] = platform.alarm_store.list(twin="B1", limit=10)
                assert (alarm.rule, alarm.state, alarm.severity) == ("bearing-hot", "active", "major")
                return platform.twin_store.feed(after=0, limit=1000)[-1].position

        head = run(main())
        assert head >= 2  # created, then at least one patch from the readings
        # the reconciler followed the events to their end, and saved where it stopped
        with open_settings_backend(settings) as reopened:
            assert reopened.cursors.cursor("reconciler") == head
        claim_identity(settings.data_dir).release()  # released when it stopped
        with pytest.raises(Unavailable, match="closed"):  # the runtime built the platform, and closed it
            platform.alarm_store.list(limit=1)
