"""``tvilling demo``: the platform, the simulated plant, the analytics and the dashboard in one process.

No hardware and no servers: the history and twins live in an embedded store under a data
directory (a fresh temporary one unless ``--data-dir`` is given), and, without ``--broker``,
an embedded MQTT broker listens on 127.0.0.1. The plant (``tvilling.plant``) publishes its
sensors over MQTT; the platform ingests them, runs the configured analytics (a
multivariate detector and a trend-based remaining-life estimate on every bearing), raises
alarms, and serves the dashboard and the API.

The story of a default run (speed 60: one plant minute per wall second), told on the console
(:mod:`tvilling.demo_flow`): production orders are seeded on the line, planned, and dispatched to
the machines as jobs; every bearing learns its normal behaviour during the first minute; at 90 s
a defect starts on machine 2's drive-end bearing; seconds later its vibration bands rise, the
detector flags the anomaly and names the contributing band, the remaining life and its band
appear, and an alarm is raised on the bearing (and on its machine and the line). The decision
weighs running to failure, slowing down and preventive work in the next maintenance windows,
proposes a work order in the best one and re-plans production around it; the auto mode approves
it (``--manual``: a person does), the demo's crew does the work in its window, the plant replaces
the bearing, the twin's analytics relearn and its alarms clear, and the machine goes back to work.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tvilling.api.app import create_app
from tvilling.api.listen import check_listen
from tvilling.app import Platform, build_platform
from tvilling.config import Settings
from tvilling.core.errors import NotFound, Unavailable
from tvilling.models.builtin import builtin_documents
from tvilling.planning.demo_plan import demo_maintenance
from tvilling.plant import EmbeddedBroker, Injection, Plant, PlantRunner
from tvilling.plant.plant import MODEL_SET, MODELS
from tvilling.plant.run import TickedPlant
from tvilling.runtime import Runtime
from tvilling.simulation.demo_whatif import WhatIf, WhatIfDesk, WhatIfSettings, narrate

if TYPE_CHECKING:
    from tvilling.demo_flow import DemoFlow

log = logging.getLogger("tvilling.demo")
BEARING = MODELS["bearing"].rsplit(";", 1)[0]
MACHINE = MODELS["machine"].rsplit(";", 1)[0]
# the detector watches the vibration spectrum at its operating point; temperatures follow load slowly and would
# need a longer training, and the overall level carries a broadband floor that does not scale with speed
MAX_RUL = 1000.0  # plant hours: the longest remaining life the trend reports; beyond it, "no trend"
HEALTH_HORIZON = 48.0  # plant hours: a remaining life shorter than this lowers the bearing's health
BANDS = ["vibrationBand1x", "vibrationBand2x", "vibrationBandBpfo", "vibrationBandHigh"]
CONTEXT = ["shaftSpeed"]
# how each band's amplitude goes with shaft speed (order-proportional vibration: the 1× band with speed², as the
# plant's rotor physics has it); the detector learns them itself when its training rows span several speeds
EXPONENTS = {"vibrationBand1x": 2.0, "vibrationBand2x": 1.0, "vibrationBandBpfo": 1.5, "vibrationBandHigh": 1.5}


def demo_analytics(speed: float, train_rows: int = 60) -> list[dict[str, Any]]:
    """The analytics of the demo: a detector and a remaining-life trend on every bearing, both judging the
    vibration at the shaft speed it was measured at (a slower or stopped machine is not a fault)."""
    return [
        {"name": "bearing-anomaly", "model": BEARING, "method": "mewma", "inputs": BANDS, "context": CONTEXT,
         # threshold 6 (the library default, 3, was chosen for SKAB's F1): with four bands and a minute of
         # training, healthy rows then stay below the alarm level instead of crossing it every few minutes
         "train_rows": train_rows, "params": {"exponents": EXPONENTS, "threshold": 6.0}},
        {"name": "bearing-rul", "model": BEARING, "method": "rul-trend", "inputs": ["vibrationBandBpfo"],
         "context": CONTEXT, "train_rows": train_rows,
         # 2.5 g of BPFO band at nominal speed is a failed bearing (tvilling.plant.physics.Params.defect_bpfo_g);
         # time in plant hours: the readings' wall time × the plant's acceleration
         "params": {"failure_level": 2.5, "unit": "hour", "time_scale": speed, "window": 120,
                    "max_rul": MAX_RUL, "health_horizon": HEALTH_HORIZON,
                    "exponents": {"vibrationBandBpfo": EXPONENTS["vibrationBandBpfo"]}}},
    ]


def demo_simulations(speed: float, learn_rows: int = 60) -> list[dict[str, Any]]:
    """Shadow mode on every machine: the twin's machine model (:class:`~tvilling.simulation.machine.MachineModel`)
    runs beside it on the live setpoint, load and state, in plant time (``time_scale``: the plant's
    acceleration); the residuals of speed, current, temperatures and vibration become the machine's
    ``simulation.machine.*`` properties. No alarm rule: the demo's alarms stay the analytics' (the
    residuals are shown on the twin page). Its cost on ingest is about 2 ms a step for 4 machines."""
    return [{
        "name": "machine", "model": MODELS["machine"], "kind": "python",
        "class": "tvilling.simulation.machine:MachineModel",
        "time_scale": speed, "step": 60.0, "learn_rows": learn_rows,
        "inputs": {"speedSetpoint": "speedSetpoint", "spindle:load": "hasSpindle/load",
                   "running": {"path": "state", "map": {"running": 1, "idle": 0, "stopped": 0, "fault": 0}}},
        "outputs": {"speed": "speed", "throughput": "throughput", "motor.current": "motor.current",
                    "motor.temperature": "motor.temperature", "de:vibration": "hasBearing[location=de]/vibration",
                    "de:vibrationBandBpfo": "hasBearing[location=de]/vibrationBandBpfo",
                    "de:temperature": "hasBearing[location=de]/temperature",
                    "nde:vibration": "hasBearing[location=nde]/vibration",
                    "nde:vibrationBandBpfo": "hasBearing[location=nde]/vibrationBandBpfo",
                    "nde:temperature": "hasBearing[location=nde]/temperature"},
    }]


def demo_alarm_rules(step_s: float = 1.0) -> list[dict[str, Any]]:
    """The demo's alarm rules; their delays count readings (``step_s`` seconds of the readings' clock apart)."""
    return [
        {"name": "bearing-anomaly", "model": BEARING, "property": "anomaly_score", "kind": "threshold",
         "above": 1.0, "clear": 0.8, "for_s": 3 * step_s, "severity": "major",
         "message": "abnormal vibration pattern on {twin}"},
        {"name": "bearing-rul", "model": BEARING, "property": "rul", "kind": "rul", "horizon": 12.0,
         "clear_for_s": 120 * step_s,  # a remaining life back above 15 h for two minutes, not one noisy estimate
         "severity": "critical", "message": "{twin} is predicted to fail within 12 plant hours"},
        {"name": "bearing-hot", "model": BEARING, "property": "temperature", "kind": "threshold", "above": 85.0,
         "clear": 80.0, "for_s": 5 * step_s, "severity": "minor"},
        {"name": "motor-hot", "model": MACHINE, "property": "motor.temperature", "kind": "threshold",
         "above": 110.0, "clear": 100.0, "for_s": 5 * step_s, "severity": "warning"},
    ]


@dataclass(frozen=True)
class DemoOptions:
    machines: int = 4
    speed: float = 60.0
    seed: int = 1
    duration: float | None = None  # seconds of plant steps (one a second), then SETTLE_S; None: until stopped
    host: str = "127.0.0.1"
    port: int = 8000
    data_dir: Path | None = None
    broker: str | None = None  # None: an embedded broker on loopback
    auto: bool = True  # the demo approves the decision's work order (or sends the slow-down it chose); False: a person
    fault_at_s: float = 90.0  # wall seconds after the start when the bearing defect begins
    learn_s: float = 60.0  # wall seconds (one reading a step) each bearing learns before it is scored
    fault_machine: int = 2
    slow_rpm: float = 900.0
    shadow: bool = True  # the machine model runs beside every machine (residuals as twin properties)
    whatif: bool = True  # the twin compares keep running / slow down / replace the bearing when a bearing turns bad
    step_s: float = 1.0  # wall seconds between the plant's steps (one reading of every sensor each)
    # the defect's growth (× the plant's 0.2/h race spall): its true life is about a day of plant time, while the
    # remaining-life trend, cautious on a young defect, first predicts a few plant hours: a window fits before it
    fault_growth: float = 0.4
    # maintenance windows on the plant clock (plant hours from the first reading): stop_h every stop_every_h from
    # first_stop_h; the bearing's replacement takes repair_h
    first_stop_h: float = 3.0
    stop_every_h: float = 4.0
    stop_h: float = 1.0
    repair_h: float = 1.0


def make_plant(o: DemoOptions) -> TickedPlant:
    """The demo's line: readings stamped on the plant's tick clock, so that a seed gives one run."""
    machine = min(o.fault_machine, o.machines)
    fault = Injection(machine=machine, fault="bearing_defect", at=o.fault_at_s * o.speed, severity=1.0,
                      growth=o.fault_growth, bearing="de")
    return TickedPlant(machines=o.machines, seed=o.seed, speed=o.speed, scenario=[fault])


def learn_rows(o: DemoOptions) -> int:
    """Readings each bearing learns from: ``learn_s`` of steps (at least 10)."""
    return max(10, round(o.learn_s / o.step_s))


def maintenance_for(o: DemoOptions, origin: datetime | None = None) -> dict[str, Any]:
    """The demo's ``[maintenance]``: its windows, crews and decisions
    (:func:`~tvilling.planning.demo_plan.demo_maintenance`), plant hour 0 at ``origin`` (the plant's first reading)."""
    return demo_maintenance(speed=o.speed, first_stop_h=o.first_stop_h, stop_every_h=o.stop_every_h, stop_h=o.stop_h,
                            repair_h=o.repair_h, origin=origin, slow_rpm=o.slow_rpm)


def settings_for(o: DemoOptions, data_dir: Path, broker: str, protocol: int) -> Settings:
    rows = learn_rows(o)
    return Settings(data_dir=data_dir, host=o.host, port=o.port, broker=broker, mqtt_protocol=protocol,
                    analytics=demo_analytics(o.speed, rows), alarm_rules=demo_alarm_rules(o.step_s),
                    maintenance_s=5.0, maintenance=maintenance_for(o),
                    simulations=demo_simulations(o.speed, rows) if o.shadow else [])


def whatif_settings(o: DemoOptions) -> WhatIfSettings:
    """The demo's what-if: keep running at the plant's nominal speed or slow to the auto mode's speed."""
    return WhatIfSettings(slow_rpm=o.slow_rpm, seed=o.seed)


def seed_twins(platform: Platform, plant: Plant) -> int:
    """Register the plant's models and create its twins (kept when the data dir is reused)."""
    from tvilling.twins.importer import import_twins

    platform.models.add(builtin_documents(MODEL_SET))
    items = []
    for item in plant.twins():
        try:
            platform.twins.get(item["id"])
        except NotFound:
            items.append(item)
    return import_twins(platform.twins, items, actor="demo") if items else 0


class Narrator:
    """Prints the story as it happens (alarms raised and cleared, commands, analytics versions).

    When the bearing-anomaly alarm is raised on a bearing, the twin asks its what-if for that
    machine (keep running, slow down, replace the bearing at the next stop: :mod:`tvilling.simulation.demo_whatif`)
    on a worker thread and prints the comparison when it is in. ``whatif`` keeps the answers:
    ``narrator.whatif.answer(machine)`` is the :class:`~tvilling.simulation.demo_whatif.WhatIf` a
    maintenance and production planner would consume (``None`` before it is in; ``whatif`` is ``None``
    when the demo runs without what-ifs)."""

    def __init__(self, platform: Platform, echo: Callable[[str], None], started: float,
                 whatif: WhatIfSettings | None = None, next_stop: Callable[[], float | None] | None = None) -> None:
        self.platform = platform
        self.echo = echo
        self.started = started
        self.next_stop = next_stop  # plant hours to the next maintenance window, for the what-if's "next stop"
        self.position = 0
        self.whatif = None if whatif is None else WhatIfDesk(platform.twins, whatif, self._tell_whatif)
        while batch := platform.alarm_store.changes(self.position, 1000):  # earlier runs' alarms are history
            self.position = batch[-1][0]

    def say(self, text: str) -> None:
        t = time.monotonic() - self.started
        self.echo(f"[{int(t // 60):02d}:{int(t % 60):02d}] {text}")

    def poll(self) -> list[dict[str, Any]]:
        items = self.platform.alarm_store.changes(self.position, 200)
        if items:
            self.position = items[-1][0]
        out = []
        for _, item in items:
            alarm = item.get("alarm", {})
            kind = item.get("type", "")
            if alarm.get("origin") != alarm.get("twin") or alarm.get("shelved"):
                continue  # the same alarm propagated to a parent: told once; a shelved one is not news
            if kind == "alarm.raised":
                rep = self._reported(alarm["twin"])
                extra = ""
                if alarm.get("rule") == "bearing-anomaly" and rep.get("contributions"):
                    top = max(rep["contributions"], key=rep["contributions"].get)
                    extra = f"; driven by {top} ({rep['contributions'][top]:.0%})"
                if str(alarm.get("rule", "")).startswith("bearing-"):
                    if rep.get("rul") is None:
                        extra += "; no failure trend yet"
                    else:
                        extra += (f"; remaining life {rep['rul']:.1f} plant h (p10 {rep.get('rul_p10', 0):.1f}, "
                                  f"p90 {rep.get('rul_p90', 0):.1f})")
                self.say(f"ALARM {alarm['severity']}: {alarm['message']}{extra}")
                if alarm.get("rule") == "bearing-anomaly":
                    self._ask_whatif(alarm["twin"], rep)
            elif kind == "alarm.cleared":
                self.say(f"cleared: {alarm['message']} ({alarm.get('actor')})")
            out.append({"type": kind, **alarm})
        return out

    def _ask_whatif(self, bearing: str, reported: dict[str, Any]) -> None:
        """Start the what-if for the machine of ``bearing`` (once per machine; off the ingest path)."""
        if self.whatif is None:
            return
        machine, _, suffix = bearing.rpartition("-")
        location = reported.get("location", suffix)
        settings = None
        stop = self.next_stop() if self.next_stop is not None else None
        if stop is not None and stop + self.whatif.settings.repair_h <= self.whatif.settings.horizon_h:
            settings = replace(self.whatif.settings, next_stop_h=round(stop, 1))
        try:
            if self.whatif.request(machine, str(location), settings):
                self.say(f"what-if: {machine} is forked from its reported state; comparing keep running, slow "
                         "down and replace the bearing at the next stop ...")
        except Exception:  # the story goes on without it
            log.exception("demo what-if for %s", bearing)

    def _tell_whatif(self, answer: WhatIf) -> None:
        for line in narrate(answer):
            self.say(line)
        self.say("the decision weighs these against the maintenance windows, the crews and the production plan")

    def _reported(self, twin: str) -> dict[str, Any]:
        try:
            return dict(self.platform.twins.get(twin).reported)
        except NotFound:
            return {}


SETTLE_S = 2.0  # wall seconds the platform is given after the plant's last step of a --duration run


async def run_demo(o: DemoOptions, *, echo: Callable[[str], None] = print,
                   on_ready: Callable[[str], None] | None = None,
                   on_flow: Callable[[DemoFlow], None] | None = None) -> None:
    """Run the demo until the plant has taken ``o.duration`` seconds of steps and the platform has
    processed them (or for good), SIGTERM (returns normally) or SIGINT (``KeyboardInterrupt`` out
    of ``asyncio.run``). The same seed and duration give the same readings and alarms.
    ``on_flow`` is given the run's :class:`~tvilling.demo_flow.DemoFlow` once it is made (its steps, plant and
    services: tests and tools).

    A taken port is a :class:`~tvilling.core.errors.Conflict` before anything starts. Without
    ``o.data_dir`` the data lives in a fresh temporary folder, removed on every way out: the
    end of the duration, SIGINT, SIGTERM or an error.
    """
    check_listen(o.host, o.port)
    loop = asyncio.get_running_loop()
    main = asyncio.current_task()
    terminated = False

    def on_sigterm() -> None:  # a stop as clean as Ctrl+C (uvicorn, serving, raises the signal again when it stops)
        nonlocal terminated
        if not terminated and main is not None:
            terminated = True
            main.cancel()

    # signal handlers need the main thread of a POSIX process (asyncio has none on Windows): elsewhere (a test's
    # thread, Windows) SIGTERM keeps its default action
    handled = sys.platform != "win32" and threading.current_thread() is threading.main_thread()
    if handled:
        loop.add_signal_handler(signal.SIGTERM, on_sigterm)
    data_dir = o.data_dir or Path(tempfile.mkdtemp(prefix="tvilling-demo-"))
    try:
        await _serve_demo(o, data_dir, echo, on_ready, on_flow)
    except asyncio.CancelledError:
        if not terminated or main is None:
            raise
        main.uncancel()
        echo("stopped (SIGTERM)")
    finally:
        if handled:
            loop.remove_signal_handler(signal.SIGTERM)
        if o.data_dir is None:
            shutil.rmtree(data_dir, ignore_errors=True)


async def _serve_demo(o: DemoOptions, data_dir: Path, echo: Callable[[str], None],
                      on_ready: Callable[[str], None] | None, on_flow: Callable[[DemoFlow], None] | None) -> None:
    import uvicorn

    from tvilling.demo_flow import DemoFlow

    plant = make_plant(o)
    async with contextlib.AsyncExitStack() as stack:
        broker, protocol = o.broker, 5
        if broker is None:
            embedded = await stack.enter_async_context(EmbeddedBroker())
            broker, protocol = embedded.url, embedded.protocol_version
        platform = build_platform(settings_for(o, data_dir, broker, protocol))
        stack.callback(platform.close)
        created = await asyncio.to_thread(seed_twins, platform, plant)
        runtime = Runtime(platform)
        app = create_app(runtime=runtime)
        server = uvicorn.Server(uvicorn.Config(app, host=o.host, port=o.port, log_level="warning",
                                               lifespan="on"))

        async def serve() -> None:
            try:
                await server.serve()
            except SystemExit as exc:  # uvicorn's answer to a failed startup: exit the process; its log says why
                raise Unavailable(f"the demo's server did not start (uvicorn exit status {exc.code}; see its log "
                                  "above)", rule="startup_failed") from None

        serving = asyncio.create_task(serve())

        async def stop_server() -> None:
            server.should_exit = True
            await asyncio.wait([serving])  # a failure of its own is raised where it is awaited, not here

        stack.push_async_callback(stop_server)
        while not server.started:
            if serving.done():
                serving.result()  # raises why it could not start
                raise Unavailable("the demo's server stopped while starting", rule="startup_failed")
            await asyncio.sleep(0.05)
        url = f"http://{o.host}:{o.port}"
        narrator = Narrator(platform, echo, time.monotonic(), whatif_settings(o) if o.whatif else None)
        app.state.demo_whatif = narrator.whatif  # the seam for a planner: .answer(machine) → WhatIf
        flow = DemoFlow(runtime, app, plant, narrator.say, speed=o.speed, step_s=o.step_s, auto=o.auto,
                        slow_rpm=o.slow_rpm, maintenance=lambda origin: maintenance_for(o, origin), poll=narrator.poll)
        narrator.next_stop = flow.next_stop_h
        if on_flow is not None:
            on_flow(flow)
        stepping = await stack.enter_async_context(contextlib.AsyncExitStack())  # closed first at the end
        await stepping.enter_async_context(PlantRunner(plant, broker, interval=o.step_s, qos=0,
                                                       protocol_version=protocol, on_frame=flow.on_frame))
        narrator.say(f"Tvilling demo: {o.machines} machines ({created} twins created) at {o.speed:g}× speed, "
                     f"seed {o.seed}; broker {broker}; data in {data_dir}")
        narrator.say(f"dashboard: {url}   (API: {url}/docs; stop with Ctrl+C)")
        narrator.say(f"each bearing learns its normal behaviour for {o.learn_s:g} s; a bearing defect starts on "
                     f"{plant.machine_ids[min(o.fault_machine, o.machines) - 1]} at {o.fault_at_s:g} s")
        if on_ready is not None:
            on_ready(url)
        following = asyncio.create_task(flow.run(), name="tvilling-demo-flow")
        stack.push_async_callback(_cancel, following)
        if o.duration is None:
            await asyncio.shield(serving)  # a cancelled demo (SIGTERM) stops the server in order, below
        elif await _steps_done(plant, max(1, round(o.duration / o.step_s)), serving, o.duration * 1.5 + 10):
            await stepping.aclose()  # the plant stops after the same step in every run of this duration
            await asyncio.sleep(SETTLE_S)  # its last readings go through ingest, analytics and the alarm rules
        elif serving.done():
            serving.result()  # the server failed: say why


async def _steps_done(plant: TickedPlant, steps: int, serving: asyncio.Task[None], limit_s: float) -> bool:
    """Wait until the plant has taken ``steps`` steps (``True``), the server stopped or ``limit_s`` passed."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit_s
    while plant.steps < steps:
        if serving.done() or loop.time() >= deadline:
            return False
        await asyncio.sleep(0.02)
    return True


async def _cancel(task: asyncio.Task[Any]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
