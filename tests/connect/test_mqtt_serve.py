"""`tvilling serve --broker` end to end: a device publishes through a real Mosquitto into the twin."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

from serve_util import call, free_port, wait_healthy
from tvilling.models.builtin import builtin_documents


def test_published_telemetry_reaches_state_history_and_dead_letters(broker, tmp_path):
    from .conftest import publish_many

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen(
        [sys.executable, "-m", "tvilling.cli", "serve", "--data-dir", str(tmp_path / "d"), "--port", str(port),
         "--broker", broker.url],
        cwd=tmp_path, env={**os.environ, "TVILLING_LOG_LEVEL": "warning", "TVILLING_MQTT_CLIENT_ID": "t-serve"},
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )
    try:
        wait_healthy(base)
        assert call("POST", f"{base}/api/models", builtin_documents("plant"))[0] == 201
        assert call("PUT", f"{base}/api/twins/B1", {"model": "dtmi:tvilling:example:Bearing;1"})[0] == 201
        t0 = 1793534400000
        messages = [("tvilling/B1/telemetry",
                     json.dumps({"ts": t0 + i * 1000, "values": {"temperature": 50.0 + i * 0.01}, "id": f"m{i}"}),
                     1, False) for i in range(500)]
        messages.append(("tvilling/B1/telemetry", "not json", 1, False))
        publish_many(broker.url, messages)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            twin = call("GET", f"{base}/api/twins/B1")[1]
            if twin["reported"].get("temperature") == 50.0 + 499 * 0.01:
                break
            time.sleep(0.2)
        else:
            raise AssertionError(f"telemetry did not arrive: {twin['reported']}")
        hist = call("GET", f"{base}/api/twins/B1/history?property=temperature&from={t0}&to={t0 + 600_000}"
                           "&limit=1000")[1]
        assert len(hist["items"]) == 500
        letters: list = []
        while time.monotonic() < deadline and not letters:  # the bad message may be in a later batch
            letters = call("GET", f"{base}/api/dead-letters")[1]["items"]
            time.sleep(0.1)
        assert len(letters) == 1 and letters[0]["transport"] == "mqtt" and letters[0]["payload"] == "not json"
    finally:
        proc.send_signal(signal.SIGTERM)
        out = proc.communicate(timeout=20)[0].decode()
    # uvicorn shuts down gracefully, then re-raises the SIGTERM it caught
    assert proc.returncode in (0, -signal.SIGTERM), out
    assert "Traceback" not in out and "Error" not in out, out


def test_a_command_goes_to_the_device_and_its_answer_comes_back(broker, tmp_path):
    import paho.mqtt.client as paho

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen(
        [sys.executable, "-m", "tvilling.cli", "serve", "--data-dir", str(tmp_path / "d"), "--port", str(port),
         "--broker", broker.url],
        cwd=tmp_path, env={**os.environ, "TVILLING_LOG_LEVEL": "warning"},
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )
    device = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id="machine-m1", protocol=paho.MQTTv5)
    got: list[dict] = []

    def on_message(client, userdata, msg):  # the machine obeys and answers on the response topic
        body = json.loads(msg.payload)
        got.append(body)
        props = paho.Properties(paho.PacketTypes.PUBLISH)
        props.CorrelationData = msg.properties.CorrelationData
        client.publish(msg.properties.ResponseTopic, json.dumps({"status": "ok", "payload": {"accepted": True}}),
                       qos=1, properties=props)

    device.on_message = on_message
    device.connect("127.0.0.1", broker.port)
    device.subscribe("tvilling/M1/commands/+", qos=1)
    device.loop_start()
    try:
        wait_healthy(base)
        assert call("POST", f"{base}/api/models", builtin_documents("plant"))[0] == 201
        assert call("PUT", f"{base}/api/twins/M1", {"model": "dtmi:tvilling:example:Machine;1"})[0] == 201
        status, record = call("POST", f"{base}/api/twins/M1/commands/setSpeed", 900.0)
        assert status == 202, record
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            record = call("GET", f"{base}/api/commands/{record['id']}")[1]
            if record["status"] == "succeeded":
                break
            time.sleep(0.2)
        assert record["status"] == "succeeded", record
        assert record["response"] == {"accepted": True}
        assert got and got[0]["request"] == 900.0
        bad = call("POST", f"{base}/api/twins/M1/commands/setSpeed", "fast")
        assert bad[0] == 422
    finally:
        device.loop_stop()
        device.disconnect()
        proc.send_signal(signal.SIGTERM)
        out = proc.communicate(timeout=20)[0].decode()
    assert "Traceback" not in out, out
