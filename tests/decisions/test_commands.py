"""The command service: validation against the model, the lifecycle through a fake transport."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tvilling.api.app import create_app
from tvilling.api.commands import router
from tvilling.app import Platform, build_platform
from tvilling.config import Settings
from tvilling.core.errors import Invalid, NotFound, Unavailable
from tvilling.decisions.commands import CommandService, describe_commands
from tvilling.decisions.lifecycle import ACKNOWLEDGED, FAILED, PENDING, SENT, SUCCEEDED, TIMED_OUT
from tvilling.decisions.store import MemoryCommandStore
from tvilling.decisions.transport import OpcUaTransport, device_status
from tvilling.models.builtin import builtin_documents
from tvilling.runtime import Runtime

from .conftest import CallingTransport, Clock, FakeTransport


def run(coro: Any) -> Any:
    return asyncio.run(asyncio.wait_for(coro, 30))


def statuses(service: CommandService) -> list[tuple[str | None, str]]:
    return [(i["previous"], i["status"]) for _, i in service.store.changes(0, 1000)]


# -- validation ----------------------------------------------------------------------------------
def test_an_unknown_twin_is_not_found(service: CommandService) -> None:
    with pytest.raises(NotFound) as err:
        run(service.invoke("M9", "setSpeed", 900.0, actor="t"))
    assert err.value.fields["twin"] == "M9"


def test_a_command_the_model_does_not_declare_is_not_found_by_name(service: CommandService,
                                                                   transport: FakeTransport) -> None:
    with pytest.raises(NotFound) as err:
        run(service.invoke("M1", "selfDestruct", None, actor="t"))
    assert (err.value.fields["command"], err.value.fields["rule"]) == ("selfDestruct", "unknown_command")
    assert "setSpeed, stop" in err.value.message
    assert transport.sent == [] and service.store.changes(0, 10) == []


@pytest.mark.parametrize(("name", "request_", "field", "rule"), [
    ("setSpeed", "fast", "request", "type"),
    ("setSpeed", True, "request", "type"),
    ("setSpeed", None, "request", "required"),
    ("setSpeed", {"value": 10, "unit": "degreeCelsius"}, "request", "unit"),
    ("stop", {"now": True}, "request", "no_request"),
])
def test_a_request_that_breaks_its_schema_is_invalid_naming_field_and_rule(
        service: CommandService, transport: FakeTransport, name: str, request_: Any, field: str, rule: str) -> None:
    with pytest.raises(Invalid) as err:
        run(service.invoke("M1", name, request_, actor="t"))
    assert (err.value.fields["field"], err.value.fields["rule"]) == (field, rule)
    assert err.value.fields["twin"] == "M1" and err.value.fields["command"] == name
    assert transport.sent == [] and service.store.list() == []


def test_a_request_in_another_unit_is_converted(service: CommandService, transport: FakeTransport) -> None:
    rec = run(service.invoke("M1", "setSpeed", {"value": 2.0, "unit": "revolutionPerSecond"}, actor="t"))
    assert rec.request == pytest.approx(120.0) and transport.sent[0][3] == pytest.approx(120.0)


# -- the lifecycle -------------------------------------------------------------------------------
def test_invoke_sends_and_the_answers_take_it_to_succeeded(service: CommandService, transport: FakeTransport,
                                                           clock: Clock) -> None:
    rec = run(service.invoke("M1", "setSpeed", 900, actor="operator"))
    assert (rec.status, rec.attempts, rec.actor, rec.request) == (SENT, 1, "operator", 900)
    assert rec.model == "dtmi:tvilling:example:Machine;1"
    assert transport.sent == [("M1", "setSpeed", rec.id, 900)]
    clock.advance(1)
    acked = run(service.on_response("M1", "setSpeed", rec.id, "accepted", None))
    assert acked.status == ACKNOWLEDGED
    assert run(service.on_response("M1", "setSpeed", rec.id, "ack", None)).status == ACKNOWLEDGED  # repeated
    clock.advance(1)
    done = run(service.on_response("M1", "setSpeed", rec.id, "ok", {"accepted": True}))
    assert (done.status, done.response, done.error) == (SUCCEEDED, {"accepted": True}, None)
    assert service.get(rec.id) == done
    assert statuses(service) == [(None, PENDING), (PENDING, SENT), (SENT, ACKNOWLEDGED),
                                 (ACKNOWLEDGED, SUCCEEDED)]
    assert run(service.on_response("M1", "setSpeed", rec.id, "error", None)) is None  # final stays final
    assert service.get(rec.id).status == SUCCEEDED


def test_a_command_without_request_or_response(service: CommandService) -> None:
    rec = run(service.invoke("M2", "stop", None, actor="t"))
    done = run(service.on_response("M2", "stop", rec.id, 200, None))
    assert done.status == SUCCEEDED and done.response is None


def test_a_response_that_breaks_the_response_schema_fails_the_command(service: CommandService) -> None:
    rec = run(service.invoke("M1", "setSpeed", 900.0, actor="t"))
    done = run(service.on_response("M1", "setSpeed", rec.id, "succeeded", {"accepted": "yes"}))
    assert done.status == FAILED and done.response == {"accepted": "yes"}
    assert "response.accepted" in done.error and "type" in done.error


def test_a_device_error_fails_the_command_with_its_reason(service: CommandService) -> None:
    rec = run(service.invoke("M1", "setSpeed", 900.0, actor="t"))
    done = run(service.on_response("M1", "setSpeed", rec.id, "error", {"message": "interlock open"}))
    assert done.status == FAILED and "interlock open" in done.error


@pytest.mark.parametrize(("status", "expected"), [
    ("accepted", ACKNOWLEDGED), ("ACK", ACKNOWLEDGED), (202, ACKNOWLEDGED), ("ok", SUCCEEDED),
    ("succeeded", SUCCEEDED), (200, SUCCEEDED), (204, SUCCEEDED), ("200", SUCCEEDED), ("error", FAILED),
    ("failed", FAILED), (500, FAILED), (404, FAILED), ("thinking", None), (100, None), (None, None),
    (True, None)])
def test_device_statuses(status: Any, expected: str | None) -> None:
    assert device_status(status) == expected


def test_answers_that_do_not_fit_are_ignored(service: CommandService) -> None:
    rec = run(service.invoke("M1", "setSpeed", 900.0, actor="t"))
    assert run(service.on_response("M1", "setSpeed", "unknown-id", "ok", {"accepted": True})) is None
    assert run(service.on_response("M2", "setSpeed", rec.id, "ok", {"accepted": True})) is None
    assert run(service.on_response("M1", "stop", rec.id, "ok", None)) is None
    assert run(service.on_response("M1", "setSpeed", rec.id, "thinking", None)) is None
    assert service.get(rec.id).status == SENT


def test_an_answer_that_overtakes_the_send_is_not_lost(service: CommandService, transport: FakeTransport) -> None:
    async def device(twin: str, name: str, request_id: str, payload: Any) -> None:
        await service.on_response(twin, name, request_id, "ok", {"accepted": True})

    transport.on_send = device
    rec = run(service.invoke("M1", "setSpeed", 900.0, actor="t"))
    assert rec.status == SUCCEEDED and rec.response == {"accepted": True}
    assert statuses(service) == [(None, PENDING), (PENDING, SENT), (SENT, SUCCEEDED)]


# -- deadlines -----------------------------------------------------------------------------------
def test_sweep_times_out_overdue_commands_and_only_those(service: CommandService, clock: Clock) -> None:
    quiet = run(service.invoke("M1", "setSpeed", 900.0, actor="t"))
    acked = run(service.invoke("M2", "stop", None, actor="t", timeout_s=10))
    run(service.on_response("M2", "stop", acked.id, "accepted", None))
    done = run(service.invoke("M1", "stop", None, actor="t", timeout_s=5))
    run(service.on_response("M1", "stop", done.id, "ok", None))
    long = run(service.invoke("M2", "setSpeed", 100.0, actor="t", timeout_s=120))
    clock.advance(9)
    assert run(service.sweep()) == []
    clock.advance(1)
    moved = run(service.sweep())
    assert [r.id for r in moved] == [acked.id]
    clock.advance(20)
    moved = run(service.sweep())
    assert [r.id for r in moved] == [quiet.id] and moved[0].status == TIMED_OUT
    assert "deadline" in moved[0].error
    assert service.get(done.id).status == SUCCEEDED and service.get(long.id).status == SENT
    assert run(service.on_response("M1", "setSpeed", quiet.id, "ok", {"accepted": True})) is None  # too late
    assert service.get(quiet.id).status == TIMED_OUT


def test_sweep_takes_an_explicit_now(service: CommandService, clock: Clock) -> None:
    from datetime import timedelta

    rec = run(service.invoke("M1", "stop", None, actor="t", timeout_s=3))
    assert run(service.sweep(clock.now + timedelta(seconds=2))) == []
    assert [r.id for r in run(service.sweep(clock.now + timedelta(seconds=3)))] == [rec.id]


# -- transport failures --------------------------------------------------------------------------
def test_a_transport_that_stays_down_fails_the_command_after_the_retries(service: CommandService,
                                                                        transport: FakeTransport) -> None:
    transport.failures = [Unavailable("broker unreachable")] * 3
    rec = run(service.invoke("M1", "setSpeed", 900.0, actor="t"))
    assert (rec.status, rec.attempts, rec.error) == (FAILED, 3, "broker unreachable")
    assert statuses(service) == [(None, PENDING), (PENDING, PENDING), (PENDING, PENDING), (PENDING, FAILED)]
    assert service.get(rec.id) == rec and transport.sent == []


def test_a_transient_transport_failure_is_retried(service: CommandService, transport: FakeTransport) -> None:
    transport.failures = [ConnectionResetError("reset by peer")]
    rec = run(service.invoke("M1", "setSpeed", 900.0, actor="t"))
    assert (rec.status, rec.attempts, rec.error) == (SENT, 2, None)
    assert len(transport.sent) == 1


def test_a_transport_refusal_is_not_retried(service: CommandService, transport: FakeTransport) -> None:
    transport.failures = [Invalid("twin 'a/b' cannot be an MQTT topic level", rule="topic")]
    rec = run(service.invoke("M1", "stop", None, actor="t"))
    assert (rec.status, rec.attempts) == (FAILED, 1) and "topic level" in rec.error


def test_a_transport_that_hangs_is_cut_off(platform) -> None:
    class Hanging(FakeTransport):
        async def send(self, twin: str, name: str, request_id: str, payload: Any) -> None:
            await asyncio.sleep(60)

    svc = CommandService(platform.twins, MemoryCommandStore(), Hanging(), retries=0, send_timeout_s=0.05)
    rec = run(svc.invoke("M1", "stop", None, actor="t"))
    assert rec.status == FAILED and "in time" in rec.error


# -- transports that answer at once (OPC UA) ------------------------------------------------------
def test_a_calling_transport_takes_the_command_to_succeeded_at_once(platform, clock: Clock) -> None:
    transport = CallingTransport(answer={"accepted": True})
    svc = CommandService(platform.twins, MemoryCommandStore(), transport, clock=clock)
    rec = run(svc.invoke("M1", "setSpeed", 900.0, actor="t"))
    assert (rec.status, rec.response) == (SUCCEEDED, {"accepted": True})
    assert transport.calls == [("M1", "setSpeed", rec.id, 900.0)] and transport.sent == []
    assert [(i["previous"], i["status"]) for _, i in svc.store.changes(0, 10)] == [
        (None, PENDING), (PENDING, SENT), (SENT, SUCCEEDED)]


def test_a_calling_transport_error_fails_the_command(platform, clock: Clock) -> None:
    transport = CallingTransport(error=Invalid("BadOutOfRange", status="BadOutOfRange"))
    svc = CommandService(platform.twins, MemoryCommandStore(), transport, clock=clock)
    rec = run(svc.invoke("M1", "setSpeed", 900.0, actor="t"))
    assert (rec.status, rec.error) == (FAILED, "BadOutOfRange")


def test_the_opcua_adapter_maps_requests_outputs_and_desired_writes(platform, clock: Clock) -> None:
    class FakeOpcUa:  # the surface of tvilling.connect.opcua.OpcUaCommands that the adapter uses
        def __init__(self) -> None:
            self.calls: list[tuple[str, str, Any]] = []
            self.writes: list[tuple[str, str, Any]] = []

        async def call(self, twin: str, command: str, args: Any = None) -> list[Any]:
            self.calls.append((twin, command, args))
            return [{"accepted": True}] if command == "setSpeed" else []

        async def write(self, twin: str, property: str, value: Any) -> None:
            self.writes.append((twin, property, value))

    opcua = FakeOpcUa()
    svc = CommandService(platform.twins, MemoryCommandStore(), OpcUaTransport(opcua), clock=clock)
    rec = run(svc.invoke("M1", "setSpeed", 900.0, actor="t"))
    assert rec.status == SUCCEEDED and rec.response == {"accepted": True}
    assert run(svc.invoke("M1", "stop", None, actor="t")).status == SUCCEEDED
    assert opcua.calls == [("M1", "setSpeed", [900.0]), ("M1", "stop", None)]
    run(OpcUaTransport(opcua).publish_desired("M1", {"speedSetpoint": 800.0}))
    assert opcua.writes == [("M1", "speedSetpoint", 800.0)]


# -- what a twin's model declares (for a client to offer the commands with care) -----------------
MACHINE_V2 = "dtmi:tvilling:example:Machine;3"


@pytest.fixture
def careful_platform() -> Iterator[Platform]:
    """The demo plant's v4 models: the Machine marks stop, start and maintenanceDone as disruptive."""
    p = build_platform(Settings(store="memory"))
    p.models.add(builtin_documents("plant-v4"))
    p.twins.put("line-1-m02", {"model": MACHINE_V2, "reported": {"state": "running"}})
    yield p
    p.close()


def test_declared_commands_say_which_are_disruptive_and_what_they_affect(careful_platform: Platform) -> None:
    out = describe_commands(careful_platform.twins, "line-1-m02")
    assert (out["twin"], out["model"]) == ("line-1-m02", MACHINE_V2)
    by_name = {c["name"]: c for c in out["items"]}
    assert set(by_name) == {"setSpeed", "stop", "start", "maintenanceDone"}
    stop = by_name["stop"]
    assert (stop["disruptive"], stop["displayName"], stop["request"], stop["affects"]) == (
        True, "Stop", None, ["state", "speed"])
    assert "production on it stops" in stop["disruption"]
    assert stop["description"].startswith("Stop the machine")
    assert by_name["maintenanceDone"]["disruptive"] and by_name["start"]["disruptive"]
    speed = by_name["setSpeed"]
    assert (speed["disruptive"], speed["disruption"], speed["affects"]) == (False, None, ["speedSetpoint", "speed"])
    assert speed["request"] == {"name": "rpm", "schema": "double", "unit": "revolutionPerMinute"}


def test_a_model_without_the_extension_declares_nothing_disruptive(platform: Platform) -> None:
    out = describe_commands(platform.twins, "M1")
    assert out["items"] and all(not c["disruptive"] and c["affects"] == [] for c in out["items"])


def test_declared_commands_of_an_unknown_twin_are_not_found(platform: Platform) -> None:
    with pytest.raises(NotFound) as err:
        describe_commands(platform.twins, "M9")
    assert "M9" in err.value.message


def test_the_api_lists_declared_commands_with_or_without_a_transport(careful_platform: Platform) -> None:
    app = create_app(platform=careful_platform)
    app.include_router(router)
    with TestClient(app) as client:
        r = client.get("/api/twins/line-1-m02/commands")
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["available"] is False  # no transport: the commands are described, not sendable
        assert [c["name"] for c in body["items"] if c["disruptive"]] == ["stop", "start", "maintenanceDone"]
        missing = client.get("/api/twins/nope/commands")
        assert missing.status_code == 404 and "nope" in missing.json()["detail"]
        assert client.post("/api/twins/line-1-m02/commands/stop").status_code == 503
    commands = CommandService(careful_platform.twins, MemoryCommandStore(), FakeTransport())
    app = create_app(runtime=Runtime(careful_platform, commands=commands))  # a runtime that reaches the devices
    with TestClient(app) as client:
        assert client.get("/api/twins/line-1-m02/commands").json()["available"] is True
