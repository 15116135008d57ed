"""``tvilling serve``, ``tvilling plant`` and ``tvilling demo``: the long-running processes."""

from __future__ import annotations

import contextlib
import ssl
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from tvilling import __version__
from tvilling.cli.common import errors, settings_from, store_options
from tvilling.examples import EXAMPLES

if TYPE_CHECKING:
    from tvilling.config import Settings


@click.command("serve")
@store_options
@click.option("--host", default=None, help="Address to listen on (default 127.0.0.1).")
@click.option("--port", type=int, default=None, help="Port (default 8000).")
@click.option("--broker", default=None, metavar="URL",
              help="Ingest from this MQTT broker (mqtt://host:port): topics tvilling/{twin}/telemetry.")
@click.option("--mappings", "mqtt_mappings", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              default=None, help="TOML/JSON payload mappings for other topics and payload shapes.")
@click.option("--shared-group", "mqtt_shared_group", default=None,
              help="Join an MQTT shared subscription so several workers split the load.")
@click.option("--opcua", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="Ingest from an OPC UA server: a TOML/JSON file with the endpoint and node bindings.")
@click.option("--example", type=click.Choice(EXAMPLES), default=None,
              help="Start with an example: 'plant' registers the example production line (line-1, 4 machines, as "
                   "`tvilling plant` simulates it) and adds the demo's analytics and alarm rules and the C-MAPSS "
                   "engine-rul analytic to the configured ones.")
@click.option("--auth", type=click.Choice(["required", "off"]), default=None,
              help="'required': every request needs an API token or OpenID Connect JWT (setting auth; default off).")
@click.option("--insecure", is_flag=True, default=False,
              help="Allow --auth off on an address other than loopback (anyone reaching the port may do anything).")
@click.option("--tls-cert", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Serve https with this PEM certificate (chain); needs --tls-key (setting tls_cert).")
@click.option("--tls-key", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="The PEM private key of --tls-cert (setting tls_key).")
@click.option("--tls-ca", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Require clients to present a certificate signed by this CA: mutual TLS (setting tls_ca).")
def serve(data_dir: Path | None, store: str | None, config_file: str | None, host: str | None,
          port: int | None, broker: str | None, mqtt_mappings: Path | None, mqtt_shared_group: str | None,
          opcua: Path | None, example: str | None, auth: str | None, insecure: bool, tls_cert: Path | None,
          tls_key: Path | None, tls_ca: Path | None) -> None:
    """Run the HTTP API (embedded store in ./tvilling-data unless --store is given)."""
    import uvicorn

    from tvilling.api.app import create_app
    from tvilling.api.listen import check_listen
    from tvilling.examples import example_settings, seed_example

    settings = settings_from(config_file, data_dir=data_dir, store=store, host=host, port=port, broker=broker,
                             mqtt_mappings=mqtt_mappings, mqtt_shared_group=mqtt_shared_group, opcua=opcua,
                             auth=auth, tls_cert=tls_cert, tls_key=tls_key, tls_ca=tls_ca)
    if settings.auth == "off" and not insecure and not _loopback(settings.host):
        raise click.UsageError(f"refusing to serve on {settings.host} with authentication off: anyone who can reach "
                               "it could read every twin and send commands to the machines. Use --auth required "
                               "(with API tokens or an OpenID Connect issuer), listen on 127.0.0.1, or give "
                               "--insecure if you really mean it")
    with errors():  # a taken port or unusable TLS files: one line and exit 1, before the store opens
        tls = _check_tls(settings)
        check_listen(settings.host, settings.port)
    if example is not None:
        settings = example_settings(settings, example)
    with errors():
        app = create_app(settings)
        if example is not None:
            platform = app.state.platform
            created = seed_example(platform, example)
            click.echo(f"example {example}: {created} twin(s) created; analytics "
                       f"{', '.join(a['name'] for a in platform.settings.analytics)}", err=True)
    where = settings.store.split("@")[-1] if settings.store else f"embedded store in {settings.data_dir}/"
    click.echo(f"tvilling {__version__}: serving on http{'s' if tls else ''}://{settings.host}:{settings.port} "
               f"({where}; auth {settings.auth}{'; client certificates required' if settings.tls_ca else ''})",
               err=True)
    ssl_options: dict[str, Any] = {}
    if tls:
        ssl_options = {"ssl_certfile": settings.tls_cert, "ssl_keyfile": settings.tls_key}
        if settings.tls_ca is not None:
            ssl_options.update(ssl_ca_certs=str(settings.tls_ca), ssl_cert_reqs=ssl.CERT_REQUIRED)
    # open streams never end by themselves: give them 5 s on shutdown, then close them
    uvicorn.run(app, host=settings.host, port=settings.port, log_level=settings.log_level,
                timeout_graceful_shutdown=5, **ssl_options)


def _check_tls(settings: Settings) -> bool:
    """Check the TLS files of the API and of an ``mqtts://`` broker; return whether the API serves https."""
    from tvilling.connect.mqtt.gmqtt_transport import ssl_context
    from tvilling.connect.mqtt.port import parse_url
    from tvilling.runtime.transports import mqtt_tls
    from tvilling.security.tls import check_server_files

    if settings.broker:
        ssl_context(parse_url(settings.broker, mqtt_tls(settings)))
    return check_server_files(settings.tls_cert, settings.tls_key, settings.tls_ca)


def _loopback(host: str) -> bool:
    """Whether ``host`` is a loopback address (or ``localhost``): only this machine can reach it."""
    import ipaddress

    if host.strip("[]").lower() in ("localhost", "localhost."):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@click.command("plant")
@click.option("--machines", type=click.IntRange(1, 1_000_000), default=4, show_default=True)
@click.option("--speed", type=click.FloatRange(min=0.001), default=60.0, show_default=True,
              help="Plant seconds per wall second.")
@click.option("--seed", type=int, default=1, show_default=True)
@click.option("--broker", default="mqtt://127.0.0.1:1883", show_default=True, metavar="URL",
              help="Where to publish; 'embedded' starts an MQTT broker on 127.0.0.1 in this process.")
@click.option("--opcua-port", type=click.IntRange(0, 65535), default=None,
              help="Also serve the machines over OPC UA on this port (0: a free one); needs tvilling[opcua].")
@click.option("--faults/--no-faults", default=True, show_default=True, help="The default scenario's bearing defect.")
@click.option("--line", default="line-1", show_default=True, help="The line's twin id (machines are LINE-m01…).")
def plant(machines: int, speed: float, seed: int, broker: str, opcua_port: int | None, faults: bool,
          line: str) -> None:
    """Run the simulated production line alone, as virtual devices (MQTT, optionally OPC UA)."""
    import asyncio

    from tvilling.plant import PlantOptions, running_plant

    options = PlantOptions(machines=machines, seed=seed, speed=speed, scenario="default" if faults else None,
                           line=line, broker=None if broker == "embedded" else broker, opcua_port=opcua_port)

    async def run() -> None:
        async with running_plant(options) as rig:
            click.echo(f"plant {line}: {machines} machines at {speed:g}x, MQTT {rig.broker_url}"
                       + (f", OPC UA {rig.opcua_url}" if rig.opcua_url else "") + " (Ctrl+C stops)")
            await asyncio.Event().wait()

    with errors(), contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run())


@click.command("demo")
@click.option("--machines", type=click.IntRange(1, 200), default=4, show_default=True, help="Machines on the line.")
@click.option("--speed", type=click.FloatRange(min=1.0, max=3600.0), default=60.0, show_default=True,
              help="Plant seconds per wall second.")
@click.option("--seed", type=int, default=1, show_default=True, help="Same seed, same run.")
@click.option("--duration", type=click.FloatRange(min=1.0), default=None, help="Stop after this many seconds.")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address of the dashboard and API.")
@click.option("--port", type=click.IntRange(0, 65535), default=8000, show_default=True)
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Keep the demo's twins and history here (default: a fresh temporary folder).")
@click.option("--broker", default=None, metavar="URL",
              help="Use this MQTT broker (e.g. mqtt://127.0.0.1:1883) instead of the embedded one.")
@click.option("--auto/--manual", default=True, show_default=True,
              help="Auto mode approves the work order the twin proposes when a bearing is predicted to fail "
                   "and the crew carries it out in its window; --manual leaves the approval to you (dashboard or "
                   "tvilling maintenance approve).")
@click.option("--learn", "learn_s", type=click.FloatRange(min=10.0), default=60.0, show_default=True,
              help="Seconds each bearing learns its normal behaviour before it is scored.")
@click.option("--fault-at", "fault_at_s", type=click.FloatRange(min=0.0), default=90.0, show_default=True,
              help="Seconds after the start when the bearing defect begins.")
@click.option("--insecure", is_flag=True, default=False,
              help="Serve the demo (which has no sign-in) on an address other than loopback anyway.")
def demo(machines: int, speed: float, seed: int, duration: float | None, host: str, port: int,
         data_dir: Path | None, broker: str | None, auto: bool, learn_s: float, fault_at_s: float,
         insecure: bool) -> None:
    """Run the platform, a simulated production line and the dashboard in one process."""
    import asyncio

    if not insecure and not _loopback(host):
        raise click.UsageError(f"refusing to serve the demo on {host}: it runs without authentication, so anyone "
                               "who can reach that address could send commands and delete twins; keep it on "
                               "127.0.0.1, or add --insecure if you really mean it")

    from tvilling.demo import DemoOptions, run_demo

    options = DemoOptions(machines=machines, speed=speed, seed=seed, duration=duration, host=host, port=port,
                          data_dir=data_dir, broker=broker, auto=auto, learn_s=learn_s, fault_at_s=fault_at_s)
    with errors(), contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run_demo(options, echo=lambda text: click.echo(text)))
