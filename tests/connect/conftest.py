"""Fixtures for transport tests: a private Mosquitto per test on a free loopback port."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from ingest_sink import RecordingSink, run  # noqa: F401  (the tests import them from here)

ROOT = Path(__file__).resolve().parents[2]
SHIPPED_CONF = ROOT / "deploy" / "mosquitto" / "tvilling.conf"
MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Broker:
    """A Mosquitto process with the shipped configuration (or Mosquitto's defaults)."""

    def __init__(self, workdir: Path, *, shipped: bool = True) -> None:
        self.workdir = workdir
        self.port = _free_port()
        self.shipped = shipped
        self.data = workdir / "data"
        self.data.mkdir()
        os.chmod(workdir, 0o777)
        os.chmod(self.data, 0o777)  # the broker drops root privileges to the mosquitto user
        self.conf = workdir / "mosquitto.conf"
        self.log = workdir / "mosquitto.log"
        self.conf.write_text(self._config())
        self.proc: subprocess.Popen[bytes] | None = None

    def _config(self) -> str:
        if not self.shipped:  # Mosquitto's defaults: only a listener, as any minimal config has
            return f"listener {self.port} 127.0.0.1\nallow_anonymous true\n"
        lines = []
        for line in SHIPPED_CONF.read_text().splitlines():
            if line.startswith("listener "):
                line = f"listener {self.port} 127.0.0.1"
            elif line.startswith("persistence_location "):
                line = f"persistence_location {self.data}/"
            lines.append(line)
        return "\n".join(lines) + "\n"

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def persistence_errors(self) -> list[str]:
        return [line for line in self.log.read_text().splitlines() if "Error" in line]

    def start(self) -> None:
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen([MOSQUITTO, "-c", str(self.conf)], stdout=log, stderr=log)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"mosquitto exited: {self.log.read_text()[-2000:]}")
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                return
            time.sleep(0.05)
        raise RuntimeError("mosquitto did not start listening")

    def stop(self) -> None:
        """Stop cleanly (SIGTERM: the broker saves its persistence file)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()


@pytest.fixture
def broker_factory() -> Iterator[Callable[..., Broker]]:
    made: list[Broker] = []
    tmp = Path(tempfile.mkdtemp(prefix="tvilling-mqtt-test-"))
    os.chmod(tmp, 0o755)  # the broker (running as the mosquitto user) must reach its data directory

    def make(*, shipped: bool = True) -> Broker:
        workdir = tmp / f"b{len(made)}"
        workdir.mkdir()
        broker = Broker(workdir, shipped=shipped)
        broker.start()
        made.append(broker)
        return broker

    try:
        yield make
    finally:
        for broker in made:
            broker.stop()
        shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture
def broker(broker_factory: Callable[..., Broker]) -> Broker:
    return broker_factory()


def publish_many(url: str, messages: Sequence[tuple[str, bytes | str, int, bool]], *, v5: bool = True,
                 client_id: str | None = None) -> None:
    """Publish with paho-mqtt (an independent client) and wait until the broker has them all."""
    import paho.mqtt.client as paho

    port = int(url.rsplit(":", 1)[1])
    client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=client_id or "",
                         protocol=paho.MQTTv5 if v5 else paho.MQTTv311)
    client.max_inflight_messages_set(500)
    client.max_queued_messages_set(0)
    connected = threading.Event()
    client.on_connect = lambda *a: connected.set()
    client.connect("127.0.0.1", port)
    client.loop_start()
    try:
        assert connected.wait(10), "publisher could not connect"
        infos = [client.publish(t, p, qos=q, retain=r) for t, p, q, r in messages]
        for info in infos:
            info.wait_for_publish(30)
            assert info.is_published()
    finally:
        client.disconnect()
        client.loop_stop()


def paho_client(url: str, *, v5: bool = True, client_id: str = "") -> Any:
    import paho.mqtt.client as paho

    port = int(url.rsplit(":", 1)[1])
    client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=client_id,
                         protocol=paho.MQTTv5 if v5 else paho.MQTTv311)
    client.connect("127.0.0.1", port)
    return client
