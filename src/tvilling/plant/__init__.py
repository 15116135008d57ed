"""A simulated plant: virtual machines for the demo and for tests, without hardware.

One production line of N machines (motor, drive-end and non-drive-end bearings, spindle),
stepped together on NumPy arrays with physics-informed behaviour, injectable faults, a
seed for reproducible runs and accelerated time; its machines run production jobs
(``runJob``: :mod:`tvilling.plant.jobs`) and report the bearings fitted. :class:`PlantRunner` talks to the twin
over MQTT (``tvilling/{twin}/telemetry``, commands, retained desired state);
:class:`~tvilling.plant.opcua.PlantOpcUaServer` exposes the machines over OPC UA (asyncua,
imported lazily); :class:`~tvilling.plant.broker.EmbeddedBroker` is an in-process amqtt
broker on loopback for running without Mosquitto.

    plant = Plant(machines=4, seed=1, speed=60)
    async with EmbeddedBroker() as broker, PlantRunner(plant, broker.url, protocol_version=4):
        ...
"""

from tvilling.plant.broker import EmbeddedBroker
from tvilling.plant.device import PlantDevice, attach_plant
from tvilling.plant.faults import FAULTS, Injection, Scenario, default_scenario
from tvilling.plant.mqtt import PlantRunner, RunnerStats
from tvilling.plant.physics import Params
from tvilling.plant.plant import COMMANDS, MODEL_SET, MODELS, CommandResult, Frame, Plant
from tvilling.plant.run import DEMO_SPEED, PlantOptions, RunningPlant, running_plant

__all__ = [
    "COMMANDS",
    "DEMO_SPEED",
    "FAULTS",
    "MODELS",
    "MODEL_SET",
    "CommandResult",
    "EmbeddedBroker",
    "Frame",
    "Injection",
    "Params",
    "Plant",
    "PlantDevice",
    "PlantOptions",
    "PlantRunner",
    "RunnerStats",
    "RunningPlant",
    "Scenario",
    "attach_plant",
    "default_scenario",
    "running_plant",
]
