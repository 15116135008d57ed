"""The dashboard signs people in with OpenID Connect (authorisation code + PKCE) and works under auth.

Against a real ``tvilling serve --auth required`` (a subprocess, OIDC settings through ``TVILLING_OIDC_*``)
and the real ``oidc-provider`` (its development login form and consent page):

* over HTTP, driven with httpx through the provider's own HTML forms: the session cookie (HttpOnly,
  SameSite=Strict), who is signed in, the CSRF header on changes, roles from the provider, one-use state
  bound to the browser, a person without a role refused, sign-out, bearer tokens unchanged, the audit;
* in Debian Chromium (Playwright): Sign in, the fleet page with its live stream over the cookie, a
  command sent (CSRF header), a viewer refused a command and told so, Sign out and Sign in again.
"""

from __future__ import annotations

import dataclasses
import os
import re
import secrets
import subprocess
import sys
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass
from html import unescape
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urljoin, urlsplit

import httpx
import pytest

from security.oidc.provider_process import RESOURCE, OidcProvider, require_provider
from serve_util import MOSQUITTO, free_port, mosquitto, wait_healthy
from tvilling.api.auth import Pending, SignIn
from tvilling.config import Settings
from tvilling.core.errors import Unauthorized

pytestmark = pytest.mark.slow

CHROMIUM = Path(os.environ.get("TVILLING_CHROMIUM", "/usr/bin/chromium"))
MACHINE = "line-1-m01"


@dataclass
class Site:
    """The server under test and the provider it trusts."""

    base: str
    provider: OidcProvider


def _env(config: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TVILLING_")}
    return {**env, "TVILLING_LOG_LEVEL": "warning", **config}


def _serve(folder: Path, port: int, broker: str, env: dict[str, str], *extra: str) -> subprocess.Popen[bytes]:
    log = (folder / "server.log").open("ab")
    proc = subprocess.Popen([sys.executable, "-m", "tvilling.cli", "serve", "--data-dir", str(folder / "data"),
                             "--port", str(port), "--broker", broker, *extra], cwd=folder, env=env,
                            stdout=log, stderr=log)
    log.close()
    try:
        wait_healthy(f"http://127.0.0.1:{port}", timeout=60)
    except AssertionError:
        _stop(proc)
        raise AssertionError(f"server did not start: {(folder / 'server.log').read_text()[-3000:]}") from None
    return proc


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    """The demo plant seeded with auth off, then the same data served with auth required and sign-in on."""
    require_provider()
    if not Path(MOSQUITTO).exists():
        pytest.skip("mosquitto is not installed (the command transport goes through it)")
    from ui.plant_seed import seed

    tmp = tmp_path_factory.mktemp("signin")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with mosquitto(tmp_path_factory.mktemp("signin-broker")) as broker, \
            OidcProvider(tmp / "oidc", redirect_uris=(f"{base}/auth/callback",)) as provider:
        plain = _serve(tmp, port, broker, _env({}))
        try:
            seed(base, minutes=10)
        finally:
            _stop(plain)
        env = _env({"TVILLING_OIDC_ISSUER": provider.issuer, "TVILLING_OIDC_AUDIENCE": RESOURCE,
                    "TVILLING_OIDC_CLIENT_ID": "dashboard"})
        proc = _serve(tmp, port, broker, env, "--auth", "required")
        try:
            yield Site(base, provider)
        finally:
            _stop(proc)


# -- the provider's pages, as a person would go through them -------------------------------------------
def _form(html: str) -> tuple[str, str]:
    """The action and the prompt (login, consent) of the provider's form on this page."""
    action = re.search(r'<form[^>]*action="([^"]+)"', html)
    prompt = re.search(r'name="prompt" value="(\w+)"', html)
    assert action and prompt, f"no sign-in form on the provider's page: {html[:500]}"
    return unescape(action.group(1)), prompt.group(1)


def through_provider(client: httpx.Client, url: str, username: str, stop_at: str) -> httpx.Response:
    """Follow the provider from ``url`` (its authorization endpoint), filling in its login form as ``username``
    and consenting, until it sends the browser to a URL starting with ``stop_at``; that redirect."""
    for _ in range(12):
        response = client.get(url)
        while response.status_code == 200:
            action, prompt = _form(response.text)
            data = {"prompt": prompt, **({"login": username, "password": "any"} if prompt == "login" else {})}
            response = client.post(urljoin(str(response.url), action), data=data)
        assert response.status_code in (302, 303), (response.status_code, response.text[:500])
        url = urljoin(str(response.url), response.headers["location"])
        if url.startswith(stop_at):
            return response
    raise AssertionError("the provider never sent the browser back")


def sign_in(site: Site, username: str) -> tuple[httpx.Client, httpx.Response]:
    """A browser-like client signed in as ``username``, and the answer of the callback."""
    client = httpx.Client(timeout=15)
    started = client.get(f"{site.base}/auth/login")
    assert started.status_code == 302, started.text
    back = through_provider(client, started.headers["location"], username, f"{site.base}/auth/callback")
    callback = client.get(urljoin(str(back.url), back.headers["location"]))
    return client, callback


def csrf(client: httpx.Client, site: Site) -> str:
    token = client.get(f"{site.base}/auth/session").json()["csrf_token"]
    assert isinstance(token, str) and len(token) > 20
    return token


# -- over HTTP -----------------------------------------------------------------------------------------------
def test_sign_in_gives_an_httponly_strict_cookie_and_the_session(site: Site) -> None:
    assert httpx.get(f"{site.base}/auth/session").status_code == 401  # nobody signed in
    started = httpx.get(f"{site.base}/auth/login")
    query = parse_qs(urlsplit(started.headers["location"]).query)
    assert started.headers["location"].startswith(site.provider.issuer)
    assert query["response_type"] == ["code"] and query["code_challenge_method"] == ["S256"]
    assert len(query["code_challenge"][0]) == 43 and query["state"][0] and query["nonce"][0]
    assert "code_verifier" not in query  # the verifier never leaves the server

    client, callback = sign_in(site, "eva")
    with closing(client):
        assert callback.status_code == 302 and callback.headers["location"] == "/", callback.text
        cookie = next(c for c in callback.headers.get_list("set-cookie") if c.startswith("tvilling_session="))
        attributes = {part.strip().split("=")[0].lower(): part.strip() for part in cookie.split(";")}
        assert "httponly" in attributes and attributes["samesite"].lower() == "samesite=strict"
        assert attributes["path"] == "Path=/" and "secure" not in attributes  # plain http on loopback
        session = client.get(f"{site.base}/auth/session").json()
        assert session["principal"] == {"id": "eva", "kind": "user", "roles": ["operator"]}
        assert client.get(f"{site.base}/api/twins/{MACHINE}").status_code == 200


def test_a_change_with_the_cookie_needs_the_csrf_header(site: Site) -> None:
    client, _ = sign_in(site, "eva")
    with closing(client):
        refused = client.post(f"{site.base}/api/query", json={"limit": 1})
        assert refused.status_code == 403 and refused.json()["rule"] == "csrf"
        wrong = client.post(f"{site.base}/api/query", json={"limit": 1}, headers={"X-CSRF-Token": "guess"})
        assert wrong.status_code == 403
        token = csrf(client, site)
        assert client.post(f"{site.base}/api/query", json={"limit": 1},
                           headers={"X-CSRF-Token": token}).status_code == 200
        sent = client.post(f"{site.base}/api/twins/{MACHINE}/commands/setSpeed", json=800,
                           headers={"X-CSRF-Token": token})
        assert sent.status_code == 202, sent.text  # an operator may send a command


def test_a_viewer_is_refused_a_command_and_a_person_without_a_role_gets_no_session(site: Site) -> None:
    client, _ = sign_in(site, "ann")
    with closing(client):
        assert client.get(f"{site.base}/auth/session").json()["principal"]["roles"] == ["viewer"]
        refused = client.post(f"{site.base}/api/twins/{MACHINE}/commands/setSpeed", json=800,
                              headers={"X-CSRF-Token": csrf(client, site)})
        assert refused.status_code == 403 and refused.json()["rule"] == "role"
    stranger, callback = sign_in(site, "mallory")
    with closing(stranger):
        assert callback.status_code == 403 and callback.json()["rule"] == "no_role"
        assert "tvilling_session" not in callback.headers.get("set-cookie", "")
        assert stranger.get(f"{site.base}/auth/session").status_code == 401


def test_the_state_is_used_once_and_only_by_the_browser_that_started_the_sign_in(site: Site) -> None:
    with httpx.Client(timeout=15) as victim, httpx.Client(timeout=15) as attacker:
        started = attacker.get(f"{site.base}/auth/login")
        back = through_provider(attacker, started.headers["location"], "ada", f"{site.base}/auth/callback")
        callback_url = urljoin(str(back.url), back.headers["location"])
        planted = victim.get(callback_url)  # the attacker's code and state, in the victim's browser
        assert planted.status_code == 422 and planted.json()["rule"] == "browser"
        assert "tvilling_session" not in planted.headers.get("set-cookie", "")
        again = attacker.get(callback_url)  # that state is spent
        assert again.status_code == 422 and again.json()["rule"] == "state"
        assert victim.get(f"{site.base}/auth/callback?state=made-up&code=x").json()["rule"] == "state"


def test_sign_out_ends_the_session_and_both_are_audited(site: Site) -> None:
    client, _ = sign_in(site, "eva")
    with closing(client):
        secret = client.cookies["tvilling_session"]
        token = csrf(client, site)
        assert client.post(f"{site.base}/auth/logout").status_code == 403  # no CSRF header
        done = client.post(f"{site.base}/auth/logout", headers={"X-CSRF-Token": token})
        assert done.status_code == 200 and done.json()["signed_out"] is True
        assert "tvilling_session" not in client.cookies
    replayed = httpx.get(f"{site.base}/api/twins/{MACHINE}", headers={"Cookie": f"tvilling_session={secret}"})
    assert replayed.status_code == 401 and replayed.json()["rule"] == "session_unknown"

    admin, _ = sign_in(site, "ada")
    with closing(admin):
        entries = admin.get(f"{site.base}/api/audit", params={"actor": "eva", "limit": 1000}).json()["items"]
    actions = [(e["action"], e["outcome"], e["detail"].get("method")) for e in entries]
    assert ("auth.sign_in", "ok", "oidc") in actions and ("auth.sign_out", "ok", None) in actions


def test_bearer_tokens_work_as_before_beside_the_cookie(site: Site) -> None:
    bearer = {"Authorization": f"Bearer {site.provider.token('ops')}"}
    assert httpx.get(f"{site.base}/api/twins/{MACHINE}", headers=bearer).status_code == 200
    with_junk_cookie = httpx.post(f"{site.base}/api/query", json={"limit": 1},
                                  headers={**bearer, "Cookie": "tvilling_session=not-a-session"})
    assert with_junk_cookie.status_code == 200  # a bearer credential needs no CSRF header; the cookie is unused
    session = httpx.get(f"{site.base}/auth/session", headers=bearer).json()
    assert session["csrf_token"] is None and "operator" in session["principal"]["roles"]


def test_a_confidential_client_exchanges_its_code_with_http_basic(site: Site) -> None:
    """The flow's server side in-process, as the client ``dashboard-confidential`` (client_secret_basic)."""
    settings = Settings(auth="required", oidc_issuer=site.provider.issuer, oidc_audience=RESOURCE,
                        oidc_client_id="dashboard-confidential", oidc_client_secret="dashboard-confidential-secret")
    signin = SignIn(settings)

    def code_for(url: str, pending: Pending) -> str:
        with httpx.Client(timeout=15) as browser:
            back = through_provider(browser, url, "erik", f"{site.base}/auth/callback")
        query = parse_qs(urlsplit(back.headers["location"]).query)
        assert query["state"] == [pending.state]
        return query["code"][0]

    url, pending = signin.begin(f"{site.base}/auth/callback")
    forged = dataclasses.replace(signin.take(pending.state), verifier=secrets.token_urlsafe(64))
    with pytest.raises(Unauthorized, match="invalid_grant"):  # PKCE: the code is worth nothing without the verifier
        signin.exchange(forged, code_for(url, pending))

    url, pending = signin.begin(f"{site.base}/auth/callback")
    code = code_for(url, pending)
    taken = signin.take(pending.state)
    person = signin.principal(signin.exchange(taken, code), taken)
    assert (person.id, person.roles, person.authenticated) == ("erik", ("engineer",), True)
    wrong = Settings(auth="required", oidc_issuer=site.provider.issuer, oidc_client_id="dashboard-confidential",
                     oidc_client_secret="not-the-secret")
    with pytest.raises(Unauthorized, match="refused the sign-in"):
        SignIn(wrong).exchange(taken, code)


# -- in the browser --------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("the playwright Python package is not installed")
    if not CHROMIUM.exists():
        pytest.skip(f"Chromium is not at {CHROMIUM} (apt-get install chromium); no browser is ever downloaded")
    with sync_playwright() as pw:
        launched = pw.chromium.launch(executable_path=str(CHROMIUM),
                                      args=["--headless", "--no-sandbox", "--disable-gpu",
                                            "--disable-background-networking"])
        try:
            yield launched
        finally:
            launched.close()


def browser_sign_in(page: Any, site: Site, username: str) -> None:
    """From the dashboard's Sign in, through the provider's login form and consent page, back to the fleet."""
    page.goto(f"{site.base}/")
    page.wait_for_selector('body[data-ready="signin"]', state="attached", timeout=20_000)
    page.click('#who [data-action="sign-in"]')
    page.wait_for_selector('input[name="login"]', timeout=20_000)
    page.fill('input[name="login"]', username)
    page.fill('input[name="password"]', "any")
    page.click('button[type="submit"]')
    page.wait_for_selector('input[name="prompt"][value="consent"]', state="attached", timeout=20_000)
    page.click('button[type="submit"]')  # the consent page: Continue
    page.wait_for_selector('body[data-ready="fleet"]', state="attached", timeout=30_000)


def test_the_dashboard_signs_in_streams_sends_a_command_and_signs_out(site: Site, browser: Any) -> None:
    context = browser.new_context(viewport={"width": 1280, "height": 800}, bypass_csp=True)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    try:
        browser_sign_in(page, site, "eva")
        page.wait_for_selector('#live[data-state="live"]', timeout=20_000)  # the SSE stream, on the cookie
        assert "eva" in page.inner_text("#who") and "operator" in page.inner_text("#who")
        cookie = next(c for c in context.cookies() if c["name"] == "tvilling_session")
        assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"

        page.goto(f"{site.base}/#/twin/{MACHINE}")
        page.wait_for_selector('body[data-ready="twin"]', state="attached", timeout=20_000)
        page.fill('#commands input[name="rpm"]', "900")
        with page.expect_response(lambda r: "/commands/setSpeed" in r.url) as answer:
            page.click('#commands button[data-command="setSpeed"]')
        assert answer.value.status == 202
        assert answer.value.request.header_value("x-csrf-token")
        page.wait_for_selector('#commands [data-command="setSpeed"] [data-status]', timeout=20_000)

        page.click('#who [data-action="sign-out"]')
        page.wait_for_selector('body[data-ready="signin"]', state="attached", timeout=20_000)
        assert page.locator('#who [data-action="sign-in"]').is_visible()
        assert errors == [], errors
    finally:
        context.close()


def test_a_viewer_sees_that_a_command_is_not_allowed(site: Site, browser: Any) -> None:
    context = browser.new_context(viewport={"width": 1280, "height": 800}, bypass_csp=True)
    page = context.new_page()
    try:
        browser_sign_in(page, site, "ann")
        page.goto(f"{site.base}/#/twin/{MACHINE}")
        page.wait_for_selector('body[data-ready="twin"]', state="attached", timeout=20_000)
        page.fill('#commands input[name="rpm"]', "900")
        with page.expect_response(lambda r: "/commands/setSpeed" in r.url) as answer:
            page.click('#commands button[data-command="setSpeed"]')
        assert answer.value.status == 403
        page.locator("#commands .cmd-err", has_text="may not").wait_for(timeout=10_000)
        assert "viewer may not execute commands" in page.inner_text("#commands .cmd-err")
    finally:
        context.close()
