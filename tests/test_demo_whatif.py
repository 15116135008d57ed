"""The demo's what-if (issue 12, item 6), in-process: the demo's plant, analytics and alarm rules on an
in-memory platform, stepped as fast as it goes. When the bearing anomaly is raised the narrator forks the
machine from its reported state on a worker thread and prints keep running / slow down / replace the
bearing at the next stop, with numbers from the run that order as the physics says they must."""

from __future__ import annotations

import math
import re
import threading
import time
from typing import Any

import pytest

from tvilling.app import Platform, build_platform
from tvilling.config import Settings
from tvilling.core.errors import Invalid, NotFound
from tvilling.core.readings import Readings
from tvilling.decisions.alarms import build_driver
from tvilling.demo import (
    DemoOptions,
    Narrator,
    demo_alarm_rules,
    demo_analytics,
    demo_simulations,
    make_plant,
    seed_twins,
    whatif_settings,
)
from tvilling.simulation.demo_whatif import (
    WhatIf,
    WhatIfDesk,
    WhatIfSettings,
    ask,
    bearing_scenario,
    narrate,
    option_names,
)
from tvilling.simulation.scenario_interventions import Command

MACHINE = "line-1-m02"
MAX_STEPS = 400  # readings (plant minutes); the anomaly is raised well before


def _platform(o: DemoOptions) -> tuple[Platform, Any]:
    plant = make_plant(o)
    platform = build_platform(Settings(store="memory", analytics=demo_analytics(o.speed, int(o.learn_s)),
                                       alarm_rules=demo_alarm_rules(),
                                       simulations=demo_simulations(o.speed, int(o.learn_s))))
    seed_twins(platform, plant)
    return platform, plant


@pytest.fixture(scope="module")
def story() -> tuple[list[str], WhatIf, Platform, list[threading.Thread]]:
    o = DemoOptions(machines=2)
    platform, plant = _platform(o)
    driver = build_driver(platform)
    lines: list[str] = []
    threads: list[threading.Thread] = []

    def echo(text: str) -> None:
        lines.append(text)
        threads.append(threading.current_thread())

    narrator = Narrator(platform, echo, time.monotonic(), whatif_settings(o))
    assert narrator.whatif is not None
    for _ in range(MAX_STEPS):
        frame = plant.step(1.0)
        rows = [(twin, prop, frame.ts_ms * 1000, v) for twin, values in frame.records() for prop, v in values.items()]
        platform.pipeline.ingest_readings(Readings.from_rows(rows), transport="test")
        driver.catch_up()
        narrator.poll()
        if narrator.whatif.answer(MACHINE) is not None:
            break
    narrator.whatif.join(60)
    answer = narrator.whatif.answer(MACHINE)
    assert answer is not None, "\n".join(lines)
    return lines, answer, platform, threads


def test_the_narrator_prints_the_three_options_with_numbers(story: Any) -> None:
    lines, answer, _, _ = story
    text = "\n".join(lines)
    print("\n" + text)
    anomaly = next(i for i, line in enumerate(lines) if "abnormal vibration pattern on line-1-m02-de" in line)
    asked = next(i for i, line in enumerate(lines) if "what-if: line-1-m02 is forked" in line)
    assert anomaly < asked  # the anomaly starts the question
    number = r"\d+(\.\d+)?"
    for name in option_names(answer.settings):
        row = next((line for line in lines if name in line and "time to failure" in line), None)
        assert row is not None, text
        assert re.search(rf"time to failure (> 24 h|{number} h)", row), row
        assert re.search(rf"P\(failure\) in the next 8 h shift {number}%", row), row
        assert re.search(r"lost production (0 \(the reference\)|[\d,]+ parts|none \([\d,]+ parts more)", row), row
    # the numbers are the run's, not fixed text
    keep = answer.option(option_names(answer.settings)[0])
    row = next(line for line in lines if option_names(answer.settings)[0] in line and "time to failure" in line)
    assert f"time to failure {keep.time_to_failure_h[1]:.1f} h" in row
    assert f"{keep.failure_probability_shift:.0%}" in row


def test_the_answer_starts_from_the_reported_state(story: Any) -> None:
    _, answer, platform, _ = story
    assert answer.machine == MACHINE and answer.bearing == "de"
    rep = answer.reported
    assert 1400 < rep["speed"] < 1600 and rep["de:location"] == "de"
    assert "motor.temperature" in rep and "spindle:load" in rep
    # the defect is inferred from the BPFO band the bearing reported when the anomaly was raised
    start = bearing_scenario(rep, "de", answer.settings).start
    ratio = rep["speed"] / 1500.0
    inferred = (rep["de:vibrationBandBpfo"] / ratio**1.5 - 0.03) / 2.5
    assert start.states["de:defect"] == pytest.approx(max(inferred, 0.0))
    assert start.inputs["speedSetpoint"] == 1500.0 and start.states["speed"] == rep["speed"]
    # the fork never touched the live machine: it still runs at its setpoint
    assert platform.twins.get(MACHINE).reported["speedSetpoint"] == 1500.0


def test_the_options_order_as_the_physics_says(story: Any) -> None:
    _, answer, _, _ = story
    keep_name, slow_name, replace_name = option_names(answer.settings)
    keep, slow, replace = (answer.option(n) for n in (keep_name, slow_name, replace_name))
    assert [k.option for k in answer.kpis] == [keep_name, slow_name, replace_name]
    # keeping on: the bearing fails within the horizon, with a real risk within the shift
    assert keep.failure_probability > 0.9 and keep.failure_probability_shift > 0.05
    # slowing down lengthens the time to failure, and lowers the risk within the shift
    assert slow.time_to_failure_h[1] > 1.5 * keep.time_to_failure_h[1]
    assert slow.time_to_failure_h[0] > keep.time_to_failure_h[0]
    assert slow.failure_probability_shift < keep.failure_probability_shift
    # replacing removes the risk after the stop: no sample fails after it
    result = answer.result
    failed = result.failed_at[result.index(replace_name), 0]
    stop = answer.settings.next_stop_h * 3600.0
    assert all(t <= stop for t in failed if math.isfinite(t))
    assert replace.failure_probability <= keep.failure_probability_shift
    # running slower makes fewer parts per hour, but over the horizon keeping on loses more to its fault
    assert replace.production_mean > slow.production_mean > keep.production_mean


def test_shadow_mode_runs_beside_the_machines_and_names_the_bearing(story: Any) -> None:
    _, _, platform, _ = story
    healthy = platform.twins.get("line-1-m01").reported["simulation"]["machine"]
    faulty = platform.twins.get(MACHINE).reported["simulation"]["machine"]
    assert healthy["residual_norm"] < faulty["residual_norm"]
    assert faulty["worst"].startswith("de:")  # the drive-end bearing diverges from the model


def test_the_question_runs_off_the_ingest_path(story: Any) -> None:
    lines, _, _, threads = story
    told = [t for line, t in zip(lines, threads, strict=True) if "time to failure" in line]
    assert told and all(t is not threading.main_thread() for t in told)


def test_a_machine_is_asked_once_and_an_unknown_one_is_a_clear_error() -> None:
    o = DemoOptions(machines=1)
    platform, plant = _platform(o)
    for _ in range(3):
        frame = plant.step(1.0)
        rows = [(twin, prop, frame.ts_ms * 1000, v) for twin, values in frame.records() for prop, v in values.items()]
        platform.pipeline.ingest_readings(Readings.from_rows(rows), transport="test")
    got: list[WhatIf] = []
    desk = WhatIfDesk(platform.twins, WhatIfSettings(samples=8, horizon_h=2.0, next_stop_h=0.5), got.append)
    assert desk.request("line-1-m01", "de") is True
    assert desk.request("line-1-m01", "de") is False
    desk.join(60)
    assert len(got) == 1 and desk.answer("line-1-m01") is got[0] and list(desk.answers()) == ["line-1-m01"]
    # a healthy bearing: a fresh defect takes longer than two hours to fail it, whatever the option
    assert all(k.failure_probability == 0.0 for k in got[0].kpis)
    assert "time to failure > 2 h (p10 > 2 h)" in "\n".join(narrate(got[0]))
    with pytest.raises(NotFound):
        desk.request("line-1-m09", "de")


def test_bad_input_names_what_was_wrong() -> None:
    rep = {"speed": 1500.0, "speedSetpoint": 1500.0, "state": "running", "spindle:load": 75.0}
    with pytest.raises(Invalid, match="bearing must be one of"):
        bearing_scenario(rep, "middle", WhatIfSettings())
    with pytest.raises(Invalid, match="must end within the horizon of 2 h") as caught:
        WhatIfSettings(horizon_h=2.0)
    assert caught.value.fields["field"] == "next_stop_h"
    with pytest.raises(Invalid, match="slow_rpm must be a number > 0"):
        WhatIfSettings(slow_rpm=-900.0)
    with pytest.raises(KeyError, match="no option 'fly'"):
        ask(rep, "m", "de", WhatIfSettings(samples=2, horizon_h=1.0, next_stop_h=0.0)).option("fly")


def test_keeping_on_from_another_setpoint_sets_the_nominal_speed() -> None:
    rep = {"speed": 900.0, "speedSetpoint": 900.0, "state": "running", "spindle:load": 75.0}
    keep = bearing_scenario(rep, "de", WhatIfSettings()).options[0]
    assert keep.interventions == (Command(at=0.0, command="setSpeed", value=1500.0),)
