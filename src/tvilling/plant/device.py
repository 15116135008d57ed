"""The simulated plant's machines behind the in-process command transport (tests, embedded demos).

A :class:`PlantDevice` answers a twin's commands with the plant's own handling — the same
:meth:`~tvilling.plant.plant.Plant.handle` the MQTT and OPC UA paths call — so that a platform's
:class:`~tvilling.decisions.commands.CommandService` reaches the plant without a broker.

>>> import asyncio
>>> from tvilling.plant.plant import Plant
>>> plant = Plant(machines=1, seed=1, scenario=None)
>>> asyncio.run(PlantDevice(plant, "line-1-m01").command("runJob", "r1", {"order": "A", "op": 0, "quantity": 2}))[0]
200
"""

from __future__ import annotations

from typing import Any, Protocol

from tvilling.plant.plant import Plant


class _Attach(Protocol):
    async def attach(self, twin: str, device: Any) -> None: ...


class PlantDevice:
    """One machine of ``plant`` as a loopback device: commands run on the plant, desired state is obeyed."""

    def __init__(self, plant: Plant, twin: str) -> None:
        plant.machine_index(twin)  # NotFound naming the machines when it is not one
        self.plant = plant
        self.twin = twin

    async def command(self, name: str, request_id: str, payload: Any) -> tuple[Any, Any]:
        result = self.plant.handle(self.twin, name, payload)
        return result.status, result.payload

    async def desired(self, state: dict[str, Any]) -> None:
        if state:
            self.plant.apply_desired(self.twin, state)


async def attach_plant(transport: _Attach, plant: Plant) -> list[str]:
    """Attach every machine of ``plant`` to ``transport`` (a ``LoopbackTransport``); returns their twin ids."""
    for machine in plant.machine_ids:
        await transport.attach(machine, PlantDevice(plant, machine))
    return list(plant.machine_ids)
