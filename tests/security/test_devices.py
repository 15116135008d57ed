"""Device credentials and ACLs in a real Mosquitto started with deploy/mosquitto/tvilling-secure.conf.

Device A may publish only its own twin's telemetry and answers, and read only its own commands: the
broker refuses A's publication as B (MQTT 5 PUBACK "not authorized", and B's twin gets nothing), A's
subscription to B's commands (SUBACK "not authorized") and A's answer to B's command; a removed
device is disconnected and refused; a wrong password is refused.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
import pytest
from click.testing import CliRunner
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from tvilling.app import Platform, build_platform
from tvilling.cli import main
from tvilling.config import Settings
from tvilling.connect.mqtt import MqttCommands, MqttIngest
from tvilling.core.errors import Conflict, Forbidden, Invalid, NotFound, Unauthorized
from tvilling.decisions.commands import CommandService
from tvilling.decisions.lifecycle import SENT, SUCCEEDED
from tvilling.decisions.store import MemoryCommandStore
from tvilling.models.builtin import builtin_documents
from tvilling.security.devices import add_device, add_server, device_acls, list_devices, remove_device, server_acls
from tvilling.security.dynsec import DynsecClient, check_password, initial_config, write_initial_config

ROOT = Path(__file__).resolve().parents[2]
SECURE_CONF = ROOT / "deploy" / "mosquitto" / "tvilling-secure.conf"
MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
MACHINE = "dtmi:tvilling:example:Machine;1"
NOT_AUTHORIZED = 0x87


class SecureBroker:
    """Mosquitto on a free loopback port with the shipped secure configuration and a fresh plugin file."""

    def __init__(self, workdir: Path) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = int(s.getsockname()[1])
        self.admin_password = secrets.token_urlsafe(16)
        data = workdir / "data"
        data.mkdir()
        os.chmod(workdir, 0o755)
        os.chmod(data, 0o777)  # the broker drops root privileges to the mosquitto user
        self.dynsec = data / "dynamic-security.json"
        owner = "mosquitto" if os.geteuid() == 0 else None
        write_initial_config(self.dynsec, "admin", self.admin_password, owner=owner)
        lines = []
        for line in SECURE_CONF.read_text().splitlines():
            if line.startswith("listener "):
                line = f"listener {self.port} 127.0.0.1"
            elif line.startswith("persistence_location "):
                line = f"persistence_location {data}/"
            elif line.startswith("plugin_opt_config_file "):
                line = f"plugin_opt_config_file {self.dynsec}"
            lines.append(line)
        self.conf = workdir / "mosquitto.conf"
        self.conf.write_text("\n".join(lines) + "\n")
        self.log = workdir / "mosquitto.log"
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen([MOSQUITTO, "-c", str(self.conf)], stdout=log, stderr=log)
        deadline = time.monotonic() + 10
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"mosquitto exited: {self.log.read_text()[-2000:]}")
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                break
            if time.monotonic() > deadline:
                raise RuntimeError("mosquitto did not start listening")
            time.sleep(0.05)

    def url(self, user: str | None = None, password: str | None = None) -> str:
        auth = f"{user}:{password}@" if user else ""
        return f"mqtt://{auth}127.0.0.1:{self.port}"

    @property
    def admin_url(self) -> str:
        return self.url("admin", self.admin_password)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


@pytest.fixture(scope="module")
def broker() -> Iterator[SecureBroker]:
    if not Path(MOSQUITTO).exists():
        pytest.skip("mosquitto is not installed")
    tmp = Path(tempfile.mkdtemp(prefix="tvilling-dynsec-test-"))
    made = SecureBroker(tmp)
    try:
        yield made
    finally:
        made.stop()
        shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture
def control(broker: SecureBroker) -> Iterator[DynsecClient]:
    with DynsecClient(broker.admin_url) as client:
        yield client


@pytest.fixture
def ids() -> str:
    """A suffix making this test's device and twin names its own on the shared broker."""
    return secrets.token_hex(3)


class Peer:
    """An MQTT 5 client (paho, its own thread) that reports the broker's reason codes."""

    def __init__(self, broker: SecureBroker, user: str | None, password: str | None) -> None:
        self.client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"peer-{secrets.token_hex(4)}",
                                  protocol=paho.MQTTv5)
        if user is not None:
            self.client.username_pw_set(user, password)
        self.connack: Any = None
        self.disconnected = threading.Event()
        self.messages: list[Any] = []
        self.got = threading.Event()
        self._acks: dict[int, Any] = {}
        self._acked = threading.Condition()
        connected = threading.Event()

        def on_connect(_c: Any, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
            self.connack = reason
            connected.set()

        def on_ack(_c: Any, _u: Any, mid: int, reason: Any, _p: Any) -> None:
            with self._acked:
                self._acks[mid] = reason
                self._acked.notify_all()

        def on_message(_c: Any, _u: Any, msg: Any) -> None:
            self.messages.append(msg)
            self.got.set()

        self.client.on_connect = on_connect
        self.client.on_disconnect = lambda *a: self.disconnected.set()
        self.client.on_publish = on_ack
        self.client.on_subscribe = on_ack
        self.client.on_message = on_message
        self.client.connect("127.0.0.1", broker.port)
        self.client.loop_start()
        assert connected.wait(10), "no CONNACK"

    def _wait(self, mid: int) -> Any:
        with self._acked:
            assert self._acked.wait_for(lambda: mid in self._acks, 10), "no acknowledgement"
            return self._acks.pop(mid)

    def publish(self, topic: str, payload: Any, correlation: str | None = None) -> int:
        """Publish QoS 1; the PUBACK's reason code (0x10 "no matching subscribers" is a success)."""
        props = None
        if correlation is not None:
            props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
            props.CorrelationData = correlation.encode()
        info = self.client.publish(topic, json.dumps(payload), qos=1, properties=props)
        return int(self._wait(info.mid).value)

    def subscribe(self, topic: str) -> int:
        """The SUBACK's reason code for one filter."""
        _, mid = self.client.subscribe(topic, qos=1)
        assert mid is not None
        [reason] = self._wait(mid)
        return int(reason.value)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@contextlib.contextmanager
def peer(broker: SecureBroker, user: str | None, password: str | None) -> Iterator[Peer]:
    made = Peer(broker, user, password)
    try:
        yield made
    finally:
        made.close()


def reading(value: float) -> dict[str, Any]:
    return {"ts": datetime.now(UTC).isoformat(), "values": {"speedSetpoint": value}}


def plant(*twins: str) -> Platform:
    platform = build_platform(Settings(store="memory"))
    platform.models.add(builtin_documents("plant"))
    for twin in twins:
        platform.twins.put(twin, {"model": MACHINE, "reported": {"state": "running"}})
    return platform


async def until(predicate: Any, what: str, timeout: float = 20.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


# -- the ACLs themselves (pure) ------------------------------------------------------------------
def test_a_device_role_grants_exactly_its_twins_topics() -> None:
    got = {(a["acltype"], a["topic"]) for a in device_acls(["M1", "M2", "M1"])}
    want = set()
    for t in ("M1", "M2"):
        want |= {("publishClientSend", f"tvilling/{t}/telemetry"),
                 ("publishClientSend", f"tvilling/{t}/commands/+/response"),
                 ("subscribePattern", f"tvilling/{t}/commands/+"), ("publishClientReceive", f"tvilling/{t}/commands/+"),
                 ("subscribePattern", f"tvilling/{t}/desired"), ("publishClientReceive", f"tvilling/{t}/desired")}
    assert got == want
    assert all(a["allow"] is True for a in device_acls(["M1"]))


@pytest.mark.parametrize("twin", ["+", "#", "a/b", "", "%u", "$SYS"])
def test_a_twin_that_is_not_one_plain_topic_level_is_refused(twin: str) -> None:
    with pytest.raises(Invalid):
        device_acls([twin])


def test_the_server_role_reads_everything_under_tvilling_and_sends_only_commands_and_desired_state() -> None:
    sends = {a["topic"] for a in server_acls() if a["acltype"] == "publishClientSend"}
    assert sends == {"tvilling/+/commands/+", "tvilling/+/desired"}
    with pytest.raises(Invalid):
        server_acls(["$CONTROL/#"])


def test_the_initial_file_holds_the_admin_hashed_and_denies_by_default(tmp_path: Path) -> None:
    doc = initial_config("admin", "pw-123456789", iterations=1000)
    [admin] = doc["clients"]
    assert "pw-123456789" not in json.dumps(doc)
    assert check_password(admin, "pw-123456789") and not check_password(admin, "pw-12345678")
    assert doc["defaultACLAccess"] == {"publishClientSend": False, "publishClientReceive": False,
                                       "subscribe": False, "unsubscribe": True}
    path = tmp_path / "ds.json"
    write_initial_config(path, "admin", "pw-123456789")
    assert path.stat().st_mode & 0o777 == 0o600
    with pytest.raises(Conflict):
        write_initial_config(path, "root", "other")


# -- against the broker ----------------------------------------------------------------------------
def test_credentials_are_required_and_checked(broker: SecureBroker, control: DynsecClient, ids: str) -> None:
    _, password = add_device(control, f"dev-{ids}", [f"T-{ids}"])
    with peer(broker, None, None) as anonymous:
        assert anonymous.connack.is_failure
    with peer(broker, f"dev-{ids}", password + "x") as wrong:
        assert wrong.connack.is_failure
    with peer(broker, f"dev-{ids}", password) as right:
        assert not right.connack.is_failure
    with pytest.raises(Unauthorized) as err:
        DynsecClient(broker.url("admin", "not-the-password")).__enter__()
    assert "not-the-password" not in str(err.value)
    with pytest.raises(Forbidden):  # a device is no admin
        DynsecClient(broker.url(f"dev-{ids}", password)).__enter__()


def test_a_device_feeds_its_own_twin_but_cannot_publish_as_another(broker: SecureBroker, control: DynsecClient,
                                                                  ids: str) -> None:
    a, b = f"M1-{ids}", f"M2-{ids}"
    server_pw = add_server(control, f"srv-{ids}")
    _, pa = add_device(control, f"dev-a-{ids}", [a])
    _, pb = add_device(control, f"dev-b-{ids}", [b])
    platform = plant(a, b)

    async def main() -> None:
        async with MqttIngest(platform.ingest, broker.url(f"srv-{ids}", server_pw), batch_ms=5):
            with peer(broker, f"dev-a-{ids}", pa) as dev_a, peer(broker, f"dev-b-{ids}", pb) as dev_b:
                assert dev_a.publish(f"tvilling/{a}/telemetry", reading(100.0)) < 0x80
                await until(lambda: platform.twins.get(a).reported.get("speedSetpoint") == 100.0, "A's reading")
                assert dev_a.publish(f"tvilling/{b}/telemetry", reading(666.0)) == NOT_AUTHORIZED
                assert dev_a.publish(f"tvilling/{b}/commands/setSpeed", {"id": "x", "request": 1}) == NOT_AUTHORIZED
                assert dev_a.publish(f"tvilling/{a}/desired", {"speedSetpoint": 1}) == NOT_AUTHORIZED
                # B's own reading, published after A's refused one, arrives; A's never does
                assert dev_b.publish(f"tvilling/{b}/telemetry", reading(200.0)) < 0x80
                await until(lambda: platform.twins.get(b).reported.get("speedSetpoint") == 200.0, "B's reading")

    try:
        asyncio.run(asyncio.wait_for(main(), 60))
    finally:
        platform.close()
    assert platform.twins.get(b).reported["speedSetpoint"] == 200.0


def test_a_device_reads_only_its_own_commands(broker: SecureBroker, control: DynsecClient, ids: str) -> None:
    a, b = f"M1-{ids}", f"M2-{ids}"
    _, pa = add_device(control, f"dev-a-{ids}", [a])
    with peer(broker, f"dev-a-{ids}", pa) as dev_a:
        for topic in (f"tvilling/{b}/commands/+", f"tvilling/{b}/commands/setSpeed", f"tvilling/{b}/desired",
                      f"tvilling/{b}/telemetry", "tvilling/+/commands/+", "tvilling/#", "#",
                      f"tvilling/{a}/commands/#", "$CONTROL/dynamic-security/v1/response"):
            assert dev_a.subscribe(topic) == NOT_AUTHORIZED, topic
        assert dev_a.subscribe(f"tvilling/{a}/commands/+") == 1
        assert dev_a.subscribe(f"tvilling/{a}/desired") == 1


def test_a_device_cannot_answer_another_devices_command(broker: SecureBroker, control: DynsecClient,
                                                        ids: str) -> None:
    a, b = f"M1-{ids}", f"M2-{ids}"
    server_pw = add_server(control, f"srv-{ids}")
    _, pa = add_device(control, f"dev-a-{ids}", [a])
    _, pb = add_device(control, f"dev-b-{ids}", [b])
    platform = plant(a, b)
    store = MemoryCommandStore()
    holder: dict[str, CommandService] = {}

    async def on_response(twin: str, name: str, request_id: str, status: Any, payload: Any) -> None:
        await holder["svc"].on_response(twin, name, request_id, status, payload)

    async def main() -> None:
        with peer(broker, f"dev-a-{ids}", pa) as dev_a, peer(broker, f"dev-b-{ids}", pb) as dev_b:
            assert dev_b.subscribe(f"tvilling/{b}/commands/+") == 1
            async with MqttCommands(broker.url(f"srv-{ids}", server_pw), on_response=on_response) as commands:
                svc = holder["svc"] = CommandService(platform.twins, store, commands, timeout_s=30)
                rec = await svc.invoke(b, "setSpeed", 900.0, actor="test")
                await until(lambda: dev_b.messages, "B's command")
                forged = {"id": rec.id, "status": "error", "payload": {"forged": True}}
                # on B's answer topic: refused by the broker
                assert dev_a.publish(f"tvilling/{b}/commands/setSpeed/response", forged, rec.id) == NOT_AUTHORIZED
                # on A's own answer topic, naming B's command: reaches the server, which ignores it
                assert dev_a.publish(f"tvilling/{a}/commands/setSpeed/response", forged, rec.id) < 0x80
                answer = {"status": "ok", "payload": {"accepted": True}}
                assert dev_b.publish(f"tvilling/{b}/commands/setSpeed/response", answer, rec.id) < 0x80
                await until(lambda: store.get(rec.id).status == SUCCEEDED, "B's answer")
                done = store.get(rec.id)
                assert done.response == {"accepted": True}
                assert [i["status"] for _, i in store.changes(0, 100)] == ["pending", SENT, SUCCEEDED]
                assert dev_a.messages == []

    try:
        asyncio.run(asyncio.wait_for(main(), 60))
    finally:
        platform.close()


def test_a_removed_device_is_disconnected_and_refused(broker: SecureBroker, control: DynsecClient, ids: str) -> None:
    name = f"dev-{ids}"
    _, password = add_device(control, name, [f"T-{ids}"])
    with peer(broker, name, password) as connected:
        assert not connected.connack.is_failure
        remove_device(control, name)
        assert connected.disconnected.wait(10), "the removed device stayed connected"
    with peer(broker, name, password) as again:
        assert again.connack.is_failure
    assert name not in [d.name for d in list_devices(control)]
    with pytest.raises(NotFound):
        remove_device(control, name)


def test_provisioning_lists_devices_and_refuses_duplicates(control: DynsecClient, ids: str) -> None:
    made, _ = add_device(control, f"dev-{ids}", [f"T1-{ids}", f"T2-{ids}"], password="a-given-password")
    add_server(control, f"srv-{ids}")
    with pytest.raises(Conflict):
        add_device(control, f"dev-{ids}", [f"T3-{ids}"])
    with pytest.raises(Conflict):  # devices and the server share the broker's usernames
        add_device(control, f"srv-{ids}", [f"T3-{ids}"])
    with pytest.raises(NotFound):  # the server is not a device
        remove_device(control, f"srv-{ids}")
    with pytest.raises(Invalid):
        add_device(control, f"dev2-{ids}", [f"T1-{ids}"], password="short")
    listed = {d.name: d for d in list_devices(control)}
    assert listed[f"dev-{ids}"].twins == (f"T1-{ids}", f"T2-{ids}") == made.twins
    assert f"srv-{ids}" not in listed and "admin" not in listed


def test_the_cli_provisions_lists_and_removes(broker: SecureBroker, ids: str, monkeypatch: pytest.MonkeyPatch,
                                              tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TVILLING_BROKER_ADMIN", broker.admin_url)
    runner = CliRunner()
    added = runner.invoke(main, ["devices", "add", f"cli-{ids}", "--twins", f"T1-{ids},T2-{ids}"])
    assert added.exit_code == 0, added.output
    password = added.stdout.strip()
    assert len(password) >= 32 and broker.admin_password not in added.output
    with peer(broker, f"cli-{ids}", password) as dev:
        assert not dev.connack.is_failure
        assert dev.publish(f"tvilling/T2-{ids}/telemetry", reading(1.0)) < 0x80
    listed = runner.invoke(main, ["devices", "list"])
    assert listed.exit_code == 0, listed.output
    assert {"name": f"cli-{ids}", "twins": [f"T1-{ids}", f"T2-{ids}"], "disabled": False} in json.loads(listed.stdout)
    removed = runner.invoke(main, ["devices", "remove", f"cli-{ids}"])
    assert removed.exit_code == 0, removed.output
    again = runner.invoke(main, ["devices", "remove", f"cli-{ids}"])
    assert again.exit_code == 1 and f"no device 'cli-{ids}'" in again.output
    bad = runner.invoke(main, ["devices", "list", "--broker", broker.url("admin", "wrong-secret-xyz")])
    assert bad.exit_code == 1 and "refused" in bad.output and "wrong-secret-xyz" not in bad.output


def test_the_cli_writes_the_initial_file_once(tmp_path: Path) -> None:
    path = tmp_path / "dynamic-security.json"
    runner = CliRunner()
    made = runner.invoke(main, ["devices", "init", str(path), "--admin", "root-admin"])
    assert made.exit_code == 0, made.output
    [admin] = json.loads(path.read_text())["clients"]
    assert admin["username"] == "root-admin" and check_password(admin, made.stdout.strip())
    again = runner.invoke(main, ["devices", "init", str(path), "--password", "-"], input="another-password\n")
    assert again.exit_code == 1 and "exists already" in again.output


def test_the_server_reads_shared_and_plain_but_cannot_publish_readings(broker: SecureBroker, control: DynsecClient,
                                                                       ids: str) -> None:
    password = add_server(control, f"srv-{ids}")
    with peer(broker, f"srv-{ids}", password) as server:
        assert server.subscribe("$share/workers/tvilling/+/telemetry") == 1
        assert server.subscribe("tvilling/+/commands/+/response") == 1
        assert server.subscribe("$CONTROL/dynamic-security/v1/response") == NOT_AUTHORIZED
        assert server.publish(f"tvilling/T-{ids}/commands/setSpeed", {"id": "c1", "request": 1}) < 0x80
        assert server.publish(f"tvilling/T-{ids}/telemetry", reading(1.0)) == NOT_AUTHORIZED
        assert server.publish("$CONTROL/dynamic-security/v1", {"commands": []}) == NOT_AUTHORIZED
