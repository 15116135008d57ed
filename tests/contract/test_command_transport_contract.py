"""The command transport's contract over the loopback (in memory), MQTT (real Mosquitto) and OPC UA (real server).

What the command service needs of any transport: a command reaches the twin's device with
its request; the device's answer comes back correlated to the request id (through the
``on_response`` callback or, for a request/response transport, as the call's result); a
refusal by the device ends the command failed; desired state reaches the device and the
latest wins; a twin the transport cannot address is refused with a ``TvillingError``.
"""

from __future__ import annotations

import asyncio
import contextlib
import doctest
from collections.abc import Callable
from typing import Any

import pytest

import tvilling.decisions.loopback as loopback_module
from ingest_sink import eventually, run
from tvilling.core.errors import Invalid, TvillingError
from tvilling.decisions.lifecycle import FAILED, SUCCEEDED
from tvilling.decisions.loopback import LoopbackTransport

from .command_rigs import SPEED0, Link

OpenLink = Callable[[], contextlib.AbstractAsyncContextManager[Link]]


def test_a_command_reaches_the_device_and_its_answer_comes_back(open_link: OpenLink) -> None:
    async def main() -> None:
        async with open_link() as link:
            status, response = await link.exchange("M1", "setSpeed", "req-1", {"speed": 800.0})
            assert (status, response) == (SUCCEEDED, SPEED0)
            assert link.devices.machines["M1"].received == [("setSpeed", {"speed": 800.0})]
            assert link.devices.machines["M1"].speed == 800.0 and link.devices.machines["M2"].received == []

    run(main(), 30)


def test_answers_are_correlated_to_their_requests(open_link: OpenLink) -> None:
    async def main() -> None:
        async with open_link() as link:
            # in sequence on one twin: each answer is the speed the one before set
            got = [await link.exchange("M1", "setSpeed", f"seq-{i}", {"speed": s})
                   for i, s in enumerate((100.0, 200.0, 300.0))]
            assert got == [(SUCCEEDED, SPEED0), (SUCCEEDED, 100.0), (SUCCEEDED, 200.0)]
            # at once on two twins: neither answer is taken for the other's
            m1, m2 = await asyncio.gather(link.exchange("M1", "setSpeed", "par-1", {"speed": 11.0}),
                                          link.exchange("M2", "setSpeed", "par-2", {"speed": 22.0}))
            assert (m1, m2) == ((SUCCEEDED, 300.0), (SUCCEEDED, SPEED0))
            assert (link.devices.machines["M1"].speed, link.devices.machines["M2"].speed) == (11.0, 22.0)

    run(main(), 30)


def test_a_request_the_device_refuses_ends_failed_and_changes_nothing(open_link: OpenLink) -> None:
    async def main() -> None:
        async with open_link() as link:
            status, error = await link.exchange("M1", "setSpeed", "neg", {"speed": -5.0})
            assert status == FAILED and isinstance(error, str) and error
            assert link.devices.machines["M1"].speed == SPEED0
            # the transport is still usable afterwards
            assert await link.exchange("M1", "setSpeed", "after", {"speed": 5.0}) == (SUCCEEDED, SPEED0)

    run(main(), 30)


def test_a_command_the_device_does_not_have_ends_failed(open_link: OpenLink) -> None:
    async def main() -> None:
        async with open_link() as link:
            status, error = await link.exchange("M1", "selfDestruct", "x-1", None)
            assert status == FAILED and "selfDestruct" in error
            assert link.devices.machines["M1"].speed == SPEED0

    run(main(), 30)


def test_a_twin_the_transport_cannot_address_is_refused(open_link: OpenLink) -> None:
    async def main() -> None:
        async with open_link() as link:
            with pytest.raises(TvillingError):
                await link.transport.send("", "setSpeed", "bad-1", {"speed": 1.0})
            with pytest.raises(TvillingError):
                await link.transport.publish_desired("", {"speedSetpoint": 1.0})
            await asyncio.sleep(0.2)
            assert all(m.received == [] for m in link.devices.machines.values())

    run(main(), 30)


def test_desired_state_reaches_the_device_and_the_latest_wins(open_link: OpenLink) -> None:
    async def main() -> None:
        async with open_link() as link:
            await link.transport.publish_desired("M1", {"speedSetpoint": 900.0})
            await link.transport.publish_desired("M2", {"speedSetpoint": 450.0})
            await link.transport.publish_desired("M1", {"speedSetpoint": 1200.0})
            assert await link.devices.desired("M1") == {"speedSetpoint": 1200.0}
            assert await link.devices.desired("M2") == {"speedSetpoint": 450.0}

    run(main(), 30)


def test_desired_state_is_kept_for_a_device_that_reads_it_after_the_platform_left(open_link: OpenLink) -> None:
    async def main() -> None:
        async with open_link() as link:
            await link.transport.publish_desired("M2", {"speedSetpoint": 640.0})
            devices = link.devices
        assert await devices.desired("M2") == {"speedSetpoint": 640.0}

    run(main(), 30)


# -- the loopback transport's own promises (what only an in-memory transport can show) ------------------------


class Recorder:
    def __init__(self, answer: Any = (200, "ok")) -> None:  # an (status, payload) answer, or an error to raise
        self.answer = answer
        self.commands: list[tuple[str, str, Any]] = []
        self.states: list[dict[str, Any]] = []
        self.gate: asyncio.Event | None = None

    async def command(self, name: str, request_id: str, payload: Any) -> tuple[Any, Any]:
        self.commands.append((name, request_id, payload))
        if self.gate is not None:
            await self.gate.wait()
        if isinstance(self.answer, BaseException):
            raise self.answer
        return self.answer

    async def desired(self, state: dict[str, Any]) -> None:
        self.states.append(state)


def test_loopback_docstring_example() -> None:
    result = doctest.testmod(loopback_module, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0


def test_loopback_send_returns_before_the_answer() -> None:
    async def main() -> None:
        answers: list[tuple[Any, ...]] = []
        device = Recorder()
        device.gate = asyncio.Event()
        async with LoopbackTransport(on_response=lambda *a: answers.append(a)) as transport:
            await transport.attach("M1", device)
            await transport.send("M1", "go", "r-1", {"n": 1})
            await eventually(lambda: bool(device.commands), 5, "the device to get the command")
            assert answers == []  # the device has not answered yet
            device.gate.set()
            await transport.drain()
        assert answers == [("M1", "go", "r-1", 200, "ok")]

    run(main(), 10)


def test_loopback_a_twin_without_a_device_accepts_and_never_answers() -> None:
    async def main() -> None:
        answers: list[tuple[Any, ...]] = []
        async with LoopbackTransport(on_response=lambda *a: answers.append(a)) as transport:
            await transport.send("M9", "go", "r-1", None)
            await transport.drain()
            assert [c.request_id for c in transport.sent] == ["r-1"] and answers == []

    run(main(), 10)


def test_loopback_a_device_that_breaks_answers_with_an_error() -> None:
    async def main() -> None:
        answers: list[tuple[Any, ...]] = []
        async with LoopbackTransport(on_response=lambda *a: answers.append(a)) as transport:
            await transport.attach("M1", Recorder(answer=RuntimeError("gearbox jammed")))
            await transport.send("M1", "go", "r-1", None)
            await transport.drain()
        [(twin, name, rid, status, payload)] = answers
        assert (twin, name, rid, status) == ("M1", "go", "r-1", "error") and "gearbox jammed" in payload["message"]

    run(main(), 10)


def test_loopback_retained_desired_state_reaches_a_device_attaching_later_and_can_be_cleared() -> None:
    async def main() -> None:
        async with LoopbackTransport() as transport:
            await transport.publish_desired("M1", {"speedSetpoint": 700.0})
            late = Recorder()
            await transport.attach("M1", late)
            assert late.states == [{"speedSetpoint": 700.0}]
            await transport.publish_desired("M1", None)
            assert late.states[-1] == {} and transport.desired("M1") == {}
            again = Recorder()
            await transport.attach("M1", again)
            assert again.states == []

    run(main(), 10)


def test_loopback_the_device_gets_copies_not_the_callers_objects() -> None:
    async def main() -> None:
        device = Recorder()
        async with LoopbackTransport() as transport:
            await transport.attach("M1", device)
            request = {"speed": 1.0}
            desired = {"speedSetpoint": 2.0}
            await transport.send("M1", "go", "r-1", request)
            await transport.publish_desired("M1", desired)
            request["speed"], desired["speedSetpoint"] = 9.0, 9.0
            await transport.drain()
        assert device.commands[0][2] == {"speed": 1.0} and device.states == [{"speedSetpoint": 2.0}]

    run(main(), 10)


@pytest.mark.parametrize(("twin", "name", "rid", "field"), [("", "go", "r", "twin"), ("M1", "", "r", "name"),
                                                             ("M1", "go", "", "request_id"),
                                                             (" M1", "go", "r", "twin")])
def test_loopback_refuses_blank_names_naming_the_field(twin: str, name: str, rid: str, field: str) -> None:
    async def main() -> None:
        async with LoopbackTransport() as transport:
            with pytest.raises(Invalid) as got:
                await transport.send(twin, name, rid, None)
            assert got.value.fields["field"] == field and transport.sent == []

    run(main(), 10)


def test_loopback_closing_cancels_answers_still_under_way() -> None:
    async def main() -> None:
        answers: list[tuple[Any, ...]] = []
        device = Recorder()
        device.gate = asyncio.Event()  # never set: the device never finishes
        async with LoopbackTransport(on_response=lambda *a: answers.append(a)) as transport:
            await transport.attach("M1", device)
            await transport.send("M1", "go", "r-1", None)
            await eventually(lambda: bool(device.commands), 5, "the device to get the command")
        assert answers == [] and transport._tasks == set()

    run(main(), 10)
