"""Production jobs on the simulated plant's machines: runJob, throughput, stalls, the queue, fitted bearings,
and the plant-v5 models that declare them (pure, no I/O)."""

from __future__ import annotations

import doctest
import importlib
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tvilling.decisions.commands import validate_payload
from tvilling.models import ModelSet, parse_models
from tvilling.models.builtin import builtin_documents
from tvilling.plant import Plant
from tvilling.plant.jobs import QUEUE_LIMIT
from tvilling.plant.plant import MODEL_SET, MODELS

NOW = 1_767_225_600_000
M1, M2 = "line-1-m01", "line-1-m02"


def quiet(machines: int = 2, speed: float = 60.0) -> Plant:
    return Plant(machines=machines, seed=5, speed=speed, scenario=None)


def job(order: str, op: int = 0, quantity: int = 10) -> dict[str, Any]:
    return {"order": order, "op": op, "quantity": quantity}


def steps(plant: Plant, n: int, start: int = 0) -> list[dict[str, dict[str, Any]]]:
    return [plant.step(1.0, now_ms=NOW + (start + k) * 1000).twin_values() for k in range(n)]


def test_a_job_is_made_at_the_machines_throughput_and_reported_until_complete() -> None:
    plant = quiet()
    answer = plant.handle(M1, "runJob", job("PO-1", 0, 10))
    assert answer.status == 200
    assert answer.payload | {"speedSetpoint": 0} == {"accepted": True, "state": "running", "speedSetpoint": 0,
                                                     "message": "running", "job": "PO-1/0", "position": 0,
                                                     "jobsCompleted": 0}
    # 120 parts an hour at 1500 rpm; a step is one plant minute: 2 parts a step
    frames = steps(plant, 6)
    m1 = [f[M1] for f in frames]
    assert [v["partsDone"] for v in m1[:4]] == [2, 4, 6, 8]
    assert [v["jobProgress"] for v in m1[:4]] == [0.2, 0.4, 0.6, 0.8]
    assert all(v["job"] == "PO-1/0" for v in m1[:4])
    done = m1[4]  # the fifth plant minute makes the tenth part
    assert (done["job"], done["partsDone"], done["jobsCompleted"], done["lastJob"]) == ("", 0, 1, "PO-1/0")
    assert m1[5]["jobsCompleted"] == 1  # nothing more without another job
    # the other machine never had a job
    assert {k: frames[-1][M2][k] for k in ("job", "jobsCompleted", "jobsQueued", "lastJob")} == {
        "job": "", "jobsCompleted": 0, "jobsQueued": 0, "lastJob": ""}


def test_a_slower_machine_takes_longer_in_proportion_to_its_speed() -> None:
    plant = quiet()
    assert plant.handle(M2, "setSpeed", 750.0).ok
    steps(plant, 3)  # ramped to 750 rpm (a 4 s lag against one-minute steps)
    assert plant.handle(M1, "runJob", job("fast", 0, 12)).ok and plant.handle(M2, "runJob", job("slow", 0, 12)).ok
    frames = steps(plant, 14, start=3)
    finished = {m: next(k for k, f in enumerate(frames) if f[m]["jobsCompleted"] == 1) + 1 for m in (M1, M2)}
    assert finished == {M1: 6, M2: 12}  # 2 parts a minute at 1500 rpm, 1 at 750


def test_a_stopped_machine_stalls_its_job_and_finishes_it_after_the_restart() -> None:
    plant = quiet()
    for m in (M1, M2):
        assert plant.handle(m, "runJob", job(f"PO-{m}", 0, 10)).ok
    frames = steps(plant, 2)
    assert frames[-1][M2]["partsDone"] == 4
    assert plant.handle(M2, "stop").payload["state"] == "stopped"
    frames = steps(plant, 5, start=2)
    assert [f[M2]["partsDone"] for f in frames] == [4] * 5  # none made while stopped
    assert frames[-1][M2]["job"] == f"PO-{M2}/0" and frames[-1][M2]["jobProgress"] == 0.4
    assert frames[2][M1]["jobsCompleted"] == 1  # the running machine finished in its 5 minutes
    assert plant.handle(M2, "start").ok
    frames = steps(plant, 5, start=7)
    finished = next(k for k, f in enumerate(frames) if f[M2]["jobsCompleted"] == 1)
    assert 3 <= finished <= 4  # 6 parts left, 2 a minute once it has spun up again: 5 minutes late in all


def test_a_faulted_machine_makes_nothing_and_refuses_new_jobs() -> None:
    plant = quiet()
    assert plant.handle(M1, "runJob", job("PO-1", 0, 10)).ok
    steps(plant, 1)
    plant.m.wear[0, 0] = 1.0  # the bearing fails in the next step
    frames = steps(plant, 3, start=1)
    assert frames[-1][M1]["state"] == "fault" and frames[-1][M1]["partsDone"] <= 4
    assert frames[-1][M1]["partsDone"] == frames[0][M1]["partsDone"]
    refused = plant.handle(M1, "runJob", job("PO-2"))
    assert refused.status == 409 and refused.payload["reason"] == "fault"
    assert "maintenance first" in refused.payload["message"]
    assert plant.handle(M1, "maintenanceDone").ok and plant.handle(M1, "start").ok
    frames = steps(plant, 5, start=4)  # 8 parts left: the first minute spins up from standstill
    assert [f[M1]["jobsCompleted"] for f in frames] == [0, 0, 0, 0, 1]  # the held job is finished after the repair


def test_jobs_queue_first_in_first_out_and_a_resend_changes_nothing() -> None:
    plant = quiet(machines=1)
    first = plant.handle(M1, "runJob", job("A", 0, 3)).payload
    second = plant.handle(M1, "runJob", job("B", 0, 4)).payload
    third = plant.handle(M1, "runJob", job("C", 2, 1)).payload
    assert [(p["job"], p["position"], p.get("reason")) for p in (first, second, third)] == [
        ("A/0", 0, None), ("B/0", 1, "queued"), ("C/2", 2, "queued")]
    again = plant.handle(M1, "runJob", job("B", 0, 4)).payload  # the same job sent twice (a retry)
    assert (again["job"], again["position"]) == ("B/0", 1)
    frame = steps(plant, 1)[0][M1]
    assert (frame["job"], frame["jobsQueued"]) == ("A/0", 2)
    frame = steps(plant, 1, start=1)[0][M1]  # A done with 4 parts' worth: one went to B already
    assert (frame["job"], frame["partsDone"], frame["jobsCompleted"], frame["lastJob"]) == ("B/0", 1, 1, "A/0")
    frames = steps(plant, 3, start=2)
    # B's last 3 parts and all of C (1 part) fit in one step's 2 + 1 carried: both complete in it, in order
    assert [(f[M1]["lastJob"], f[M1]["jobsCompleted"]) for f in frames] == [("A/0", 1), ("C/2", 3), ("C/2", 3)]
    assert frames[-1][M1]["jobsCompleted"] == 3 and frames[-1][M1]["job"] == ""
    done = plant.handle(M1, "runJob", job("A", 0, 3))
    assert done.status == 409 and done.payload["reason"] == "done"


def test_the_queue_is_bounded() -> None:
    plant = quiet(machines=1)
    for k in range(QUEUE_LIMIT + 1):
        assert plant.handle(M1, "runJob", job("O", k, 5)).ok
    full = plant.handle(M1, "runJob", job("O", 99, 5))
    assert full.status == 409 and full.payload["reason"] == "queue_full"
    assert f"{QUEUE_LIMIT} jobs wait" in full.payload["message"]


def test_a_stopped_machine_holds_a_new_job_until_it_is_started() -> None:
    plant = quiet(machines=1)
    plant.handle(M1, "stop")
    held = plant.handle(M1, "runJob", job("H", 0, 4))
    assert held.status == 200 and held.payload["reason"] == "stopped" and held.payload["position"] == 0
    assert "starts when the machine is started" in held.payload["message"]
    assert steps(plant, 3)[-1][M1]["partsDone"] == 0
    plant.handle(M1, "start")
    frames = steps(plant, 4, start=3)
    assert frames[-1][M1]["lastJob"] == "H/0"


@pytest.mark.parametrize("request_, field", [
    (None, "object"), ("PO-1", "object"), ({"order": "", "op": 0, "quantity": 1}, "order"),
    ({"order": "A", "op": -1, "quantity": 1}, "op"), ({"order": "A", "op": 0, "quantity": 0}, "quantity"),
    ({"order": "A", "op": 0, "quantity": 2.5}, "quantity"), ({"order": "A", "op": True, "quantity": 1}, "op"),
    ({"order": "A", "op": 0, "quantity": 1, "rush": True}, "unknown fields"), ({"order": "A" * 200, "op": 0,
                                                                              "quantity": 1}, "order"),
])
def test_bad_job_requests_are_refused_naming_what_is_wrong(request_: Any, field: str) -> None:
    plant = quiet(machines=1)
    answer = plant.handle(M1, "runJob", request_)
    assert answer.status == 400 and answer.payload["reason"] == "invalid"
    assert field in answer.payload["message"]
    assert plant.handle("line-1-m01-de", "runJob", job("A")).status == 404  # jobs go to machines


def test_maintenance_fits_bearings_with_new_part_numbers_dated_by_the_next_frame() -> None:
    plant = quiet(machines=2)
    first = steps(plant, 1)[0]
    de, nde = first[f"{M2}-de"], first[f"{M2}-nde"]
    assert de["partNumber"].startswith("6205-2RS-S") and nde["partNumber"].startswith("6204-2RS-S")
    assert len({first[f"{m}-{b}"]["partNumber"] for m in (M1, M2) for b in ("de", "nde")}) == 4
    # the first bearings were fitted when the machine's running hours began (the twins' time: hours ÷ speed)
    hours = plant.state_of(M2)["operatingHours"]
    fitted = datetime.fromisoformat(de["installDate"].replace("Z", "+00:00"))
    assert fitted == pytest.approx(datetime.fromtimestamp(NOW / 1000, UTC)
                                   - timedelta(hours=hours) / plant.speed, abs=timedelta(seconds=2))
    before = steps(plant, 3, start=1)[-1]
    assert before[f"{M2}-de"]["partNumber"] == de["partNumber"]  # unchanged while nothing is replaced
    plant.handle(M2, "maintenanceDone")
    after = steps(plant, 1, start=4)[0]
    assert after[f"{M2}-de"]["partNumber"] not in (de["partNumber"], nde["partNumber"])
    assert after[f"{M2}-de"]["partNumber"] != after[f"{M2}-nde"]["partNumber"]
    assert after[f"{M2}-de"]["installDate"] == after[f"{M2}-nde"]["installDate"] == "2026-01-01T00:00:04Z"
    assert after[f"{M1}-de"]["partNumber"] == first[f"{M1}-de"]["partNumber"]  # the other machine kept its own
    assert after[f"{M1}-de"]["installDate"] == first[f"{M1}-de"]["installDate"]


def test_the_plant_v5_models_declare_the_jobs_and_the_fitted_parts() -> None:
    models = ModelSet(parse_models(builtin_documents(MODEL_SET)))
    machine, bearing = models.resolve(MODELS["machine"]), models.resolve(MODELS["bearing"])
    # the new versions extend the old: every spec and relationship written for Machine;3 / Bearing;4 still applies
    assert models.is_a(MODELS["machine"], "dtmi:tvilling:example:Machine;3")
    assert models.is_a(MODELS["bearing"], "dtmi:tvilling:example:Bearing;4")
    assert set(machine.commands) == {"setSpeed", "stop", "start", "maintenanceDone", "runJob"}
    run_job = machine.commands["runJob"]
    assert not run_job.disruptive and set(run_job.affects) >= {"job", "jobProgress"}
    assert {"job", "jobProgress", "partsDone", "jobsCompleted", "jobsQueued", "lastJob"} <= set(machine.properties)
    assert {"partNumber", "installDate"} <= set(bearing.properties)
    # the plant's answers fit the command's declared response, and the model takes its requests
    plant = quiet(machines=1)
    request = validate_payload(M1, "runJob", run_job.request, job("PO-9", 1, 7), "request")
    for answer in (plant.handle(M1, "runJob", request), plant.handle(M1, "runJob", job("PO-9", 2, 7))):
        validate_payload(M1, "runJob", run_job.response, answer.payload, "response")
    # both model sets can be registered side by side (a data directory of the earlier release)
    both = ModelSet(parse_models(builtin_documents("plant-v4"))).with_models(parse_models(builtin_documents(MODEL_SET)))
    assert MODELS["machine"] in both and "dtmi:tvilling:example:Machine;3" in both


@pytest.mark.parametrize("name", ["jobs", "device", "plant"])
def test_docstring_examples(name: str) -> None:
    result = doctest.testmod(importlib.import_module(f"tvilling.plant.{name}"))
    assert result.attempted > 0 and result.failed == 0
