"""Helpers for the plant's transport tests: a recording ingest sink, unique namespaces, deadlines."""

from __future__ import annotations

import os
import socket
import uuid
from urllib.parse import urlsplit

import pytest

from ingest_sink import RecordingSink, eventually, run  # noqa: F401  (the tests import them from here)

MOSQUITTO = os.environ.get("TVILLING_TEST_MQTT", "mqtt://127.0.0.1:1883")


@pytest.fixture
def mosquitto() -> str:
    """The real Mosquitto on loopback (tests use their own twin ids on it)."""
    parts = urlsplit(MOSQUITTO)
    try:
        socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 1883), timeout=1).close()
    except OSError:
        pytest.skip(f"no MQTT broker at {MOSQUITTO} (set TVILLING_TEST_MQTT)")
    return MOSQUITTO


@pytest.fixture
def line() -> str:
    """A line id no other test uses, so its twins' topics are this test's own."""
    return f"t{uuid.uuid4().hex[:10]}"
