"""`tvilling plant`: the simulated line alone, as virtual devices on an MQTT broker."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from urllib.parse import urlsplit

import paho.mqtt.client as mqtt


def test_plant_command_publishes_the_line_on_its_embedded_broker():
    proc = subprocess.Popen([sys.executable, "-m", "tvilling.cli", "plant", "--machines", "2", "--broker", "embedded",
                             "--speed", "1"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        line = ""
        for line in proc.stdout:  # type: ignore[union-attr]
            if line.startswith("plant line-1"):
                break
        assert "2 machines" in line, line
        url = urlsplit(line.split("MQTT ", 1)[1].split(" ", 1)[0].rstrip(","))
        got: list[tuple[str, dict]] = []
        done = threading.Event()
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv311)

        def on_message(_c, _u, msg):
            got.append((msg.topic, json.loads(msg.payload)))
            if len({t for t, _ in got}) >= 5:
                done.set()

        client.on_message = on_message
        client.on_connect = lambda c, *_: c.subscribe("tvilling/+/telemetry", 0)
        client.connect(url.hostname, url.port)
        client.loop_start()
        try:
            assert done.wait(20), got
        finally:
            client.loop_stop()
            client.disconnect()
        topics = {t for t, _ in got}
        assert "tvilling/line-1-m01-de/telemetry" in topics or "tvilling/line-1-m02-de/telemetry" in topics
        bearing = next(doc for t, doc in got if t.endswith("-de/telemetry"))
        assert {"ts", "values"} <= set(bearing) and bearing["values"]["vibration"] > 0
    finally:
        proc.terminate()
        proc.wait(15)
