"""MQTT transport: telemetry ingest, commands and desired state (gmqtt behind a small port)."""

from tvilling.connect.mqtt.commands import MqttCommands, command_topic, desired_topic
from tvilling.connect.mqtt.ingest import IngestStats, MqttIngest
from tvilling.connect.mqtt.port import BrokerAddress, Inbound, MqttTransport, SessionOptions, TlsFiles, parse_url
from tvilling.connect.mqtt.telemetry import TELEMETRY_TOPIC, Translator

__all__ = [
    "TELEMETRY_TOPIC",
    "BrokerAddress",
    "Inbound",
    "IngestStats",
    "MqttCommands",
    "MqttIngest",
    "MqttTransport",
    "SessionOptions",
    "TlsFiles",
    "Translator",
    "command_topic",
    "desired_topic",
    "parse_url",
]
