"""MQTT over TLS: a real Mosquitto with a TLS listener, the platform's ingest and the plant talking mqtts."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import paho.mqtt.client as paho
import pytest
from tls_certs import TlsCerts, issue, make_ca, make_certs

from ingest_sink import RecordingSink, run
from serve_util import call, free_port, mosquitto, wait_healthy
from tvilling.connect.mqtt import MqttIngest, TlsFiles, parse_url
from tvilling.connect.mqtt.gmqtt_transport import GmqttTransport
from tvilling.connect.mqtt.port import SessionOptions
from tvilling.core.errors import Invalid, Unauthorized, Unavailable
from tvilling.models.builtin import builtin_documents
from tvilling.plant import Plant
from tvilling.plant.mqtt import PlantRunner


@pytest.fixture
def folder() -> Iterator[Path]:
    """A folder Mosquitto can read after dropping root to its own user (pytest's tmp_path is private)."""
    path = Path(tempfile.mkdtemp(prefix="tvilling-tls-test-"))
    os.chmod(path, 0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def certs(folder: Path) -> TlsCerts:
    return make_certs(folder / "pki")


@contextlib.contextmanager
def tls_broker(folder: Path, certs: TlsCerts, *, require_certificate: bool = False, extra: str = "",
               server: tuple[Path, Path] | None = None) -> Iterator[str]:
    """A Mosquitto whose only listener speaks TLS; yields its mqtts:// URL."""
    cert, key = server or (certs.server_cert, certs.server_key)
    conf = (f"cafile {certs.ca}\ncertfile {cert}\nkeyfile {key}\ntls_version tlsv1.2\n"
            f"require_certificate {'true' if require_certificate else 'false'}\n{extra}")
    with mosquitto(folder, conf) as url:
        yield url.replace("mqtt://", "mqtts://")


def _port(url: str) -> int:
    return int(url.rsplit(":", 1)[1])


def _paho(url: str, *, ca: Path | None, cert: tuple[Path, Path] | None = None) -> tuple[paho.Client, bool]:
    """An independent client (paho); TLS when ``ca`` is given. Returns it (looping) and whether it connected."""
    client = paho.Client(paho.CallbackAPIVersion.VERSION2, protocol=paho.MQTTv5)
    if ca is not None:
        client.tls_set(ca_certs=str(ca), certfile=str(cert[0]) if cert else None,
                       keyfile=str(cert[1]) if cert else None, tls_version=ssl.PROTOCOL_TLS_CLIENT)
    connected = threading.Event()
    client.on_connect = lambda _c, _u, _f, reason, _p: reason == 0 and connected.set()
    try:
        client.connect("127.0.0.1", _port(url), keepalive=10)
    except OSError:
        return client, False
    client.loop_start()
    ok = connected.wait(5)
    return client, ok


def _telemetry(twin: str, i: int) -> tuple[str, bytes]:
    body = {"ts": 1793534400000 + i * 1000, "values": {"temperature": 50.0 + i}, "id": f"{twin}-{i}"}
    return f"tvilling/{twin}/telemetry", json.dumps(body).encode()


def test_the_served_platform_ingests_over_mqtts_with_a_client_certificate(folder: Path, certs: TlsCerts) -> None:
    """``tvilling serve --broker mqtts://…`` with TVILLING_MQTT_CA/CERT/KEY; the broker demands a client cert."""
    with tls_broker(folder, certs, require_certificate=True) as url:
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        env = {k: v for k, v in os.environ.items() if not k.startswith("TVILLING_")}
        env |= {"TVILLING_LOG_LEVEL": "warning", "TVILLING_MQTT_CLIENT_ID": "t-tls-serve", "TVILLING_BROKER": url,
                "TVILLING_MQTT_CA": str(certs.ca), "TVILLING_MQTT_CERT": str(certs.client_cert),
                "TVILLING_MQTT_KEY": str(certs.client_key)}
        proc = subprocess.Popen([sys.executable, "-m", "tvilling.cli", "serve", "--data-dir", str(folder / "d"),
                                 "--port", str(port)], cwd=folder, env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT)
        try:
            wait_healthy(base, timeout=40)
            assert call("POST", f"{base}/api/models", builtin_documents("plant"))[0] == 201
            assert call("PUT", f"{base}/api/twins/B1", {"model": "dtmi:tvilling:example:Bearing;1"})[0] == 201
            publisher, ok = _paho(url, ca=certs.ca, cert=(certs.client_cert, certs.client_key))
            try:
                assert ok, "the publisher could not connect over TLS"
                for i in range(20):
                    publisher.publish(*_telemetry("B1", i), qos=1).wait_for_publish(10)
            finally:
                publisher.disconnect()
                publisher.loop_stop()
            deadline = time.monotonic() + 20
            while call("GET", f"{base}/api/twins/B1")[1]["reported"].get("temperature") != 69.0:
                assert time.monotonic() < deadline, "telemetry over mqtts did not reach the twin"
                time.sleep(0.2)
        finally:
            proc.send_signal(signal.SIGTERM)
            out = proc.communicate(timeout=20)[0].decode()
        assert "Traceback" not in out, out


def test_a_plain_client_cannot_connect_to_the_tls_port(folder: Path, certs: TlsCerts) -> None:
    with tls_broker(folder, certs) as url:
        client, ok = _paho(url, ca=None)
        client.loop_stop()
        assert not ok
        plain = url.replace("mqtts://", "mqtt://")
        with pytest.raises(Unavailable):
            run(GmqttTransport(parse_url(plain), SessionOptions("plain", connect_timeout_s=3)).__aenter__())
        trusting, ok = _paho(url, ca=certs.ca)  # the same broker answers a client that speaks TLS
        trusting.disconnect()
        trusting.loop_stop()
        assert ok


def _connect(url: str, files: TlsFiles | None) -> None:
    async def main() -> None:
        async with GmqttTransport(parse_url(url, files), SessionOptions("tls-probe", clean_start=True,
                                                                        connect_timeout_s=5)) as transport:
            assert transport.connected

    run(main(), timeout=30)


def test_the_broker_certificate_must_chain_to_the_configured_ca(folder: Path, certs: TlsCerts) -> None:
    stranger = make_ca(folder / "other", "Another CA")
    with tls_broker(folder, certs) as url:
        _connect(url, TlsFiles(ca=str(certs.ca)))
        for untrusting in (TlsFiles(ca=str(stranger.path)), None):  # another CA; the system's trust store
            with pytest.raises(Unavailable, match="TLS handshake failed") as refused:
                _connect(url, untrusting)
            assert refused.value.fields["rule"] == "tls"


def test_require_certificate_refuses_clients_without_one_from_the_ca(folder: Path, certs: TlsCerts) -> None:
    stranger = make_ca(folder / "other", "Another CA")
    forged_cert, forged_key = issue(stranger, folder / "other", "client", "device-1", server=False)
    with tls_broker(folder, certs, require_certificate=True) as url:
        _connect(url, TlsFiles(ca=str(certs.ca), cert=str(certs.client_cert), key=str(certs.client_key)))
        for files in (TlsFiles(ca=str(certs.ca)), TlsFiles(ca=str(certs.ca), cert=str(forged_cert),
                                                           key=str(forged_key))):
            with pytest.raises((Unavailable, Unauthorized)):
                _connect(url, files)


def test_insecure_skips_only_the_host_name_check_and_only_on_loopback(folder: Path, certs: TlsCerts) -> None:
    issuer = make_ca(folder / "named", "Named CA")
    named = issue(issuer, folder / "named", "server", "broker.example", server=True, names=["broker.example"])
    stranger = make_ca(folder / "other", "Another CA")
    with tls_broker(folder, certs, server=named) as url:
        with pytest.raises(Unavailable, match="TLS handshake failed"):  # 127.0.0.1 is not in the certificate
            _connect(url, TlsFiles(ca=str(issuer.path)))
        _connect(url, TlsFiles(ca=str(issuer.path), insecure=True))
        with pytest.raises(Unavailable, match="TLS handshake failed"):  # the chain is still checked
            _connect(url, TlsFiles(ca=str(stranger.path), insecure=True))
    with pytest.raises(Invalid, match="refused for a broker not on loopback"):
        parse_url("mqtts://broker.example:8883", TlsFiles(ca=str(issuer.path), insecure=True))
    with pytest.raises(Invalid, match="not mqtts://"):  # a CA given for a plain URL is not silently unused
        parse_url("mqtt://127.0.0.1:1883", TlsFiles(ca=str(issuer.path)))


def test_user_name_and_password_from_the_url_work_over_tls(folder: Path, certs: TlsCerts) -> None:
    passwords = folder / "passwords"
    passwords.write_text("")
    subprocess.run(["mosquitto_passwd", "-b", str(passwords), "ingest", "s3cret"], check=True)
    os.chmod(passwords, 0o644)
    extra = f"allow_anonymous false\npassword_file {passwords}\n"
    with tls_broker(folder, certs, extra=extra) as url:
        files = TlsFiles(ca=str(certs.ca))
        good, bad = (url.replace("mqtts://", f"mqtts://ingest:{pw}@") for pw in ("s3cret", "wrong"))
        _connect(good, files)
        with pytest.raises(Unauthorized):
            _connect(bad, files)


def test_the_plant_publishes_over_mqtts_into_the_ingest(folder: Path, certs: TlsCerts) -> None:
    with tls_broker(folder, certs, require_certificate=True) as url:
        files = TlsFiles(ca=str(certs.ca), cert=str(certs.client_cert), key=str(certs.client_key))
        sink = RecordingSink()

        async def main() -> None:
            async with MqttIngest(sink, url, client_id="tls-ingest", tls_files=files), \
                    PlantRunner(Plant(machines=1, seed=3, speed=60), url, interval=0.05, tls_files=files):
                await sink.wait_for(lambda: len({e.twin for e in sink.envelopes}) >= 3)
                await asyncio.sleep(0)

        run(main(), timeout=60)
    assert any(e.twin.endswith("m01") for e in sink.envelopes)
