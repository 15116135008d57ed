"""OPC UA with Basic256Sha256 SignAndEncrypt, trusted certificates and username/password (issue 14, item 3).

Against the plant's REAL asyncua server configured as a plant's controller would be: it offers only
Basic256Sha256 SignAndEncrypt, trusts one client certificate and knows one user. The platform's own
runtime ingests from it (its ``--opcua`` config file, the password from an environment variable).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from opcua_certs import make_app_certificate

from tvilling.app import build_platform
from tvilling.config import Settings
from tvilling.connect.opcua import OpcUaCommands, OpcUaSession, load_opcua_config
from tvilling.core.errors import Invalid, Unauthorized
from tvilling.models.builtin import builtin_documents
from tvilling.plant import Plant
from tvilling.plant.opcua import OpcUaServerSecurity, PlantOpcUaServer
from tvilling.runtime import Runtime

MACHINE = "dtmi:tvilling:example:Machine;1"
USER, PASSWORD = "operator", "pump-room-7"


@dataclass(frozen=True)
class Pki:
    server: tuple[Path, Path]
    client: tuple[Path, Path]
    stranger: tuple[Path, Path]  # a well-formed client certificate the server does not trust
    trusted: Path


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pki]:
    folder = tmp_path_factory.mktemp("opcua-pki")
    server = make_app_certificate(folder, "server", "urn:tvilling:plant:server", server=True)
    client = make_app_certificate(folder, "client", "urn:tvilling:test:client", server=False)
    stranger = make_app_certificate(folder, "stranger", "urn:tvilling:test:stranger", server=False)
    trusted = folder / "trusted"
    trusted.mkdir()
    (trusted / "client.der").write_bytes(client[0].read_bytes())
    yield Pki(server, client, stranger, trusted)


def secured(pki: Pki) -> OpcUaServerSecurity:
    return OpcUaServerSecurity(certificate=pki.server[0], private_key=pki.server[1], trusted=[pki.trusted],
                               users={USER: PASSWORD})


def endpoint(url: str, pki: Pki, **overrides: Any) -> dict[str, Any]:
    ep = {"url": url, "timeout_s": 2.0, "security_policy": "Basic256Sha256", "security_mode": "SignAndEncrypt",
          "certificate": str(pki.client[0]), "private_key": str(pki.client[1]),
          "server_certificate": str(pki.server[0]), "username": USER, "password": PASSWORD}
    ep.update(overrides)
    return {k: v for k, v in ep.items() if v is not None}


def run(coro: Any, timeout: float = 30) -> Any:
    return asyncio.run(asyncio.wait_for(coro, timeout))


async def until(predicate: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


async def connect(url: str, pki: Pki, **overrides: Any) -> None:
    async with OpcUaSession(load_opcua_config({"endpoint": endpoint(url, pki, **overrides)}).endpoint) as s:
        await s.browse("Objects")


def test_runtime_ingests_over_sign_and_encrypt_and_calls_methods(pki: Pki, tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """The platform's runtime, given a TOML config with certificates and a password from the environment,
    ingests the machine's speed into its twin; a command (method call) goes over the same secure channel."""
    plant = Plant(machines=1, seed=4, speed=60.0, line="sec-1", scenario=None)
    machine = plant.machine_ids[0]
    monkeypatch.setenv("TVILLING_TEST_OPCUA_PASSWORD", PASSWORD)

    async def main() -> None:
        async with PlantOpcUaServer(plant, interval=0.1, security=secured(pki)) as server:
            ep = endpoint(server.url, pki, password=None, password_env="TVILLING_TEST_OPCUA_PASSWORD")
            conf = tmp_path / "opcua.toml"
            conf.write_text("[endpoint]\n" + "".join(f'{k} = {v!r}\n'.replace("'", '"') if isinstance(v, str)
                                                     else f"{k} = {v}\n" for k, v in ep.items())
                            + f'[[bindings]]\nnode = "{server.node_id(machine, "speed")}"\ntwin = "{machine}"\n'
                            'property = "speed"\nsampling_ms = 50\n')
            assert "pump-room-7" not in conf.read_text()
            platform = build_platform(Settings(data_dir=tmp_path / "data", opcua=conf))
            try:
                platform.models.add(builtin_documents("plant"))
                platform.twins.put(machine, {"model": MACHINE})
                async with Runtime(platform):
                    def speed() -> Any:
                        return platform.twins.get(machine).reported.get("speed")

                    await until(lambda: isinstance(speed(), float) and speed() > 100, "the twin's speed")
                config = load_opcua_config({"endpoint": ep, "methods": [
                    {"twin": machine, "command": "setSpeed", "object": f"ns={server.ns};s={machine}",
                     "method": f"ns={server.ns};s={machine}.setSpeed"}]})
                async with OpcUaCommands(config) as commands:
                    assert await commands.call(machine, "setSpeed", [700.0]) == [True, "running"]
                assert plant.m.setpoint[0] == 700.0
            finally:
                platform.close()

    run(main(), timeout=45)


def test_refusals_say_why(pki: Pki) -> None:
    """Wrong password, untrusted certificate, no security, a wrong pinned server certificate, an anonymous user:
    each refused by the server (or before sending anything) with an error naming the cause."""
    plant = Plant(machines=1, seed=5, speed=60.0, line="sec-2", scenario=None)

    async def main() -> None:
        async with PlantOpcUaServer(plant, security=secured(pki)) as server:
            url = server.url
            await connect(url, pki)  # the control: these credentials are good
            with pytest.raises(Unauthorized, match=r"BadUserAccessDenied.*username/password") as denied:
                await connect(url, pki, password="guess")
            assert denied.value.fields["status"] == "BadUserAccessDenied"
            assert "guess" not in str(denied.value)
            with pytest.raises(Unauthorized, match=r"BadCertificateUntrusted.*endpoint\.certificate"):
                await connect(url, pki, certificate=str(pki.stranger[0]), private_key=str(pki.stranger[1]))
            with pytest.raises(Unauthorized, match="offers no None endpoint"):  # anonymous, no security at all
                await connect(url, pki, security_policy="None", certificate=None, private_key=None,
                              server_certificate=None, username=None, password=None)
            with pytest.raises(Unauthorized, match=r"offers no Basic256Sha256 Sign endpoint.*SignAndEncrypt"):
                await connect(url, pki, security_mode="Sign")
            with pytest.raises(Unauthorized, match="BadIdentityTokenRejected"):  # secure channel, no user
                await connect(url, pki, username=None, password=None)
            with pytest.raises(Unauthorized, match=r"endpoint\.server_certificate"):  # pinned: not this server
                await connect(url, pki, server_certificate=str(pki.stranger[0]))

    run(main())


@pytest.mark.parametrize(("overrides", "field"), [
    ({"certificate": "/nonexistent/client.der"}, "endpoint.certificate"),
    ({"private_key": "/nonexistent/client.pem"}, "endpoint.private_key"),
    ({"server_certificate": "/nonexistent/server.der"}, "endpoint.server_certificate"),
    ({"certificate": None, "private_key": None}, "endpoint.certificate"),
    ({"security_policy": "Basic128Rsa15"}, "endpoint.security_policy"),
    ({"password": None, "password_env": "TVILLING_TEST_UNSET_VARIABLE"}, "endpoint.password_env"),
    ({"password_env": "HOME"}, "endpoint.password"),
])
def test_bad_security_config_is_invalid_before_connecting(pki: Pki, overrides: dict[str, Any], field: str) -> None:
    with pytest.raises(Invalid) as err:  # port 1: nothing listens; the config fails first
        load_opcua_config({"endpoint": endpoint("opc.tcp://127.0.0.1:1", pki, **overrides)})
    assert err.value.fields["field"] == field


def test_policy_names_with_underscores_are_accepted(pki: Pki) -> None:
    cfg = load_opcua_config({"endpoint": endpoint("opc.tcp://127.0.0.1:1", pki,
                                                  security_policy="Aes256_Sha256_RsaPss")})
    assert cfg.endpoint.policy == "Aes256Sha256RsaPss"
