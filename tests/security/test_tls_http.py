"""``tvilling serve`` over TLS: a real server with test certificates, clients that trust it and ones that do not."""

from __future__ import annotations

import contextlib
import os
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from tls_certs import TlsCerts, issue, make_ca, make_certs

from serve_util import free_port

COMMAND = [sys.executable, "-m", "tvilling.cli", "serve", "--store", "memory"]


def _env(tmp: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TVILLING_")}
    return {**env, "TVILLING_DATA_DIR": str(tmp / "data"), "TVILLING_LOG_LEVEL": "warning"}


def _trusting(ca: Path, cert: tuple[Path, Path] | None = None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(ca))
    if cert is not None:
        context.load_cert_chain(str(cert[0]), str(cert[1]))
    return context


@contextlib.contextmanager
def _serving(tmp: Path, certs: TlsCerts, *extra: str) -> Iterator[int]:
    """A ``tvilling serve`` with TLS on a free port; waits until it answers https (CA-trusting, with the client
    certificate, so that it also works under --tls-ca)."""
    port = free_port()
    proc = subprocess.Popen([*COMMAND, "--port", str(port), "--tls-cert", str(certs.server_cert), "--tls-key",
                             str(certs.server_key), *extra], cwd=tmp, env=_env(tmp),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    context = _trusting(certs.ca, (certs.client_cert, certs.client_key))
    try:
        deadline = time.monotonic() + 40
        while True:
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"https://127.0.0.1:{port}/health", verify=context, timeout=2).status_code == 200:
                    break
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise AssertionError(f"server did not answer https: {proc.communicate(timeout=10)[1][-2000:]}")
            time.sleep(0.2)
        yield port
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=20)
        assert "Traceback" not in err, err


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> TlsCerts:
    return make_certs(tmp_path_factory.mktemp("tls"))


def test_https_with_the_ca_answers_and_untrusting_or_plain_clients_are_refused(tmp_path: Path,
                                                                               certs: TlsCerts) -> None:
    with _serving(tmp_path, certs) as port:
        for host in ("127.0.0.1", "localhost"):  # both names are in the server certificate
            answer = httpx.get(f"https://{host}:{port}/api/models", verify=_trusting(certs.ca), timeout=10)
            assert answer.status_code == 200 and answer.json() == {"items": []}
        with pytest.raises(httpx.TransportError):  # plain http to the TLS port: no HTTP answer at all
            httpx.get(f"http://127.0.0.1:{port}/api/models", timeout=10)
        with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):  # the system's trust store
            httpx.get(f"https://127.0.0.1:{port}/health", timeout=10)
        stranger = make_ca(tmp_path / "other", "Another CA")
        with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
            httpx.get(f"https://127.0.0.1:{port}/health", verify=_trusting(stranger.path), timeout=10)


def test_tls_ca_requires_a_client_certificate_signed_by_it(tmp_path: Path, certs: TlsCerts) -> None:
    with _serving(tmp_path, certs, "--tls-ca", str(certs.ca)) as port:
        url = f"https://127.0.0.1:{port}/health"
        mine = httpx.get(url, verify=_trusting(certs.ca, (certs.client_cert, certs.client_key)), timeout=10)
        assert mine.status_code == 200
        with pytest.raises(httpx.TransportError):  # no client certificate
            httpx.get(url, verify=_trusting(certs.ca), timeout=10).raise_for_status()
        stranger = make_ca(tmp_path / "other", "Another CA")
        forged = issue(stranger, tmp_path / "other", "client", "device-1", server=False)
        with pytest.raises(httpx.TransportError):  # a client certificate from another CA
            httpx.get(url, verify=_trusting(certs.ca, forged), timeout=10).raise_for_status()


def _refused(tmp: Path, *args: str) -> str:
    done = subprocess.run([*COMMAND, "--port", str(free_port()), *args], capture_output=True, text=True,
                          timeout=60, cwd=tmp, env=_env(tmp))
    assert done.returncode != 0, done.stderr
    assert "serving on" not in done.stderr and "Traceback" not in done.stderr, done.stderr
    return done.stderr


def test_unusable_tls_files_are_one_clear_error_before_starting(tmp_path: Path, certs: TlsCerts) -> None:
    assert "--tls-cert needs --tls-key" in _refused(tmp_path, "--tls-cert", str(certs.server_cert))
    assert "--tls-key needs --tls-cert" in _refused(tmp_path, "--tls-key", str(certs.server_key))
    missing = tmp_path / "nowhere.pem"
    assert f"TLS certificate {missing}: no such file" in _refused(
        tmp_path, "--tls-cert", str(missing), "--tls-key", str(certs.server_key))
    mismatched = _refused(tmp_path, "--tls-cert", str(certs.server_cert), "--tls-key", str(certs.client_key))
    assert "cannot be used together" in mismatched
    not_a_ca = tmp_path / "junk.pem"
    not_a_ca.write_text("not a certificate\n")
    assert "TLS client CA" in _refused(tmp_path, "--tls-cert", str(certs.server_cert), "--tls-key",
                                       str(certs.server_key), "--tls-ca", str(not_a_ca))


def test_tls_does_not_lift_the_refusal_to_serve_a_public_address_without_auth(tmp_path: Path,
                                                                              certs: TlsCerts) -> None:
    err = _refused(tmp_path, "--host", "0.0.0.0", "--tls-cert", str(certs.server_cert), "--tls-key",
                   str(certs.server_key))
    assert "refusing to serve on 0.0.0.0 with authentication off" in err
