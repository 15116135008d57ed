"""Typed configuration, read once: defaults < ``tvilling.toml`` < ``TVILLING_*`` environment < flags.

>>> Settings(port=9000).port
9000
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict, TomlConfigSettingsSource

CONFIG_ENV = "TVILLING_CONFIG"


class Settings(BaseSettings):
    """Every setting of a Tvilling process. Environment variables: ``TVILLING_<NAME>``."""

    model_config = SettingsConfigDict(env_prefix="TVILLING_", extra="forbid", toml_file=None)

    data_dir: Path = Field(Path("tvilling-data"), description="directory of the embedded store")
    store: str | None = Field(
        None,
        description="store URL: unset for the embedded SQLite store in data_dir, "
        "'memory' for a throw-away in-memory one, or postgresql://user@host:port/db for server mode",
    )
    pg_schema: str = Field("tvilling", pattern=r"^[a-z_][a-z0-9_]{0,62}$",
                           description="PostgreSQL schema holding Tvilling's tables")
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    allowed_hosts: list[str] | None = Field(
        None, description="Host header names (port ignored) the API answers; '*.example.com' matches subdomains, "
        "'*' any. Unset: localhost, 127.0.0.1, ::1 and `host` when it is a specific address (when `host` is a "
        "wildcard such as 0.0.0.0, any name, with a warning). Others get 400: this defeats DNS rebinding")
    allowed_origins: list[str] = Field(
        default_factory=list, description="origins (scheme://host[:port]) of other sites whose pages may send "
        "writes and open the live streams; pages of the server's own origin always may, others get 403")
    max_body_bytes: int = Field(1_048_576, ge=1024, description="largest request body accepted (413 above)")
    default_page_size: int = Field(100, ge=1, le=1000)
    max_page_size: int = Field(1000, ge=1, le=10_000)
    log_level: str = "info"
    auth: Literal["required", "off"] = Field(
        "off", description="'required': every API request needs a bearer credential (API token or OpenID Connect "
        "JWT) and the caller's role must allow the route; 'off': anyone reaching the port may do everything")
    oidc_issuer: str | None = Field(None, description="OpenID Connect issuer URL whose JWTs are accepted")
    oidc_audience: str | None = Field(None, description="the audience (aud) the JWTs must name")
    oidc_roles_claim: str = Field("roles", description="the JWT claim holding the caller's roles")
    oidc_jwks_url: str | None = Field(None, description="JWKS URL (default: from the issuer's discovery document)")
    oidc_client_id: str | None = Field(None, description="the dashboard's client id at the OpenID Connect provider: "
                                       "set, the dashboard signs people in (authorisation code + PKCE, /auth/login)")
    oidc_client_secret: str | None = Field(None, description="the dashboard client's secret, for a confidential "
                                           "client (sent with HTTP Basic); unset: a public client")
    oidc_redirect_url: str | None = Field(None, description="where the provider sends the browser back (register it "
                                          "there); default: <the request's base URL>/auth/callback")
    oidc_scope: str = Field("openid profile", description="the scopes the dashboard's sign-in asks for")
    session_hours: float = Field(8.0, gt=0, le=24 * 30, description="how long a dashboard sign-in lasts")
    audit: bool = Field(False, description="append every committed change of twin state (telemetry by batch and "
                        "source) to the tamper-evident audit chain (`tvilling audit verify`); on whenever auth is "
                        "required")
    rate_limit_writes_per_s: float = Field(50.0, ge=0, description="with auth required: writes (any method but "
                                           "GET/HEAD/OPTIONS) per second per identity, beyond the burst (429 "
                                           "with Retry-After above it; 0: no limit)")
    rate_limit_writes_burst: int = Field(200, ge=1, description="with auth required: writes one identity may "
                                         "send at once before rate_limit_writes_per_s applies")
    rate_limit_auth_failures_per_min: int = Field(30, ge=0, description="with auth required: refused credentials "
                                                  "per minute per client address before it gets 429 (0: no limit)")
    tls_cert: Path | None = Field(None, description="PEM certificate (chain) of the HTTP API: serve https")
    tls_key: Path | None = Field(None, description="PEM private key of tls_cert")
    tls_ca: Path | None = Field(None, description="CA file: require HTTPS clients to present a certificate it "
                                "signed (mutual TLS)")
    broker: str | None = Field(None, description="MQTT broker to ingest from, e.g. mqtt://127.0.0.1:1883, or "
                               "mqtts://host:8883 for TLS")
    broker_admin: str | None = Field(None, description="the broker's dynamic-security admin for `tvilling devices`, "
                                     "mqtt://ADMIN:PASSWORD@HOST:PORT; keep it in TVILLING_BROKER_ADMIN, not on "
                                     "a command line")
    mqtt_ca: Path | None = Field(None, description="CA file the mqtts:// broker's certificate is checked against "
                                 "(default: the system's trust store)")
    mqtt_cert: Path | None = Field(None, description="client certificate presented to the mqtts:// broker")
    mqtt_key: Path | None = Field(None, description="private key of mqtt_cert")
    mqtt_tls_insecure: bool = Field(False, description="skip the broker certificate's host-name check (the chain "
                                    "is still verified); refused unless the broker is on loopback")
    mqtt_mappings: Path | None = Field(None, description="TOML/JSON file of payload mappings for other topics")
    mqtt_shared_group: str | None = Field(None, description="shared-subscription group: workers split the load")
    mqtt_client_id: str | None = Field(
        None, description="MQTT client id of the ingest session (commands use '<id>-commands'); default: a stable "
        "identity made once and kept in data_dir/mqtt-identity, so a restarted server resumes its broker session")
    opcua: Path | None = Field(None, description="TOML/JSON OPC UA config (endpoint + node bindings) to ingest from")
    maintenance_s: float = Field(30.0, gt=0, description="how often stale checks and rollup compaction run")
    max_ingest_bytes: int = Field(16 * 1_048_576, ge=1024, description="largest POST /api/ingest body")
    ingest_max_future_s: float = Field(300.0, gt=0, description="readings further ahead are rejected")
    ingest_reorder_window_s: float = Field(3600.0, ge=0, description="late readings within it are re-ordered")
    ingest_stale_after_s: float = Field(300.0, gt=0, description="silence after which a series is stale")
    ingest_spike_z: float = Field(8.0, gt=0, description="z-score beyond which a reading is a spike")
    mqtt_protocol: Literal[4, 5] = Field(5, description="MQTT protocol of the broker connection: 5, or 4 for "
                                         "MQTT 3.1.1 brokers (the demo's embedded broker)")
    analytics: list[dict[str, Any]] = Field(default_factory=list, description="analytics bound to twin models "
                                            "([[analytics]] tables; see tvilling.analytics.binding.spec)")
    simulations: list[dict[str, Any]] = Field(default_factory=list, description="behaviour models bound to twin "
                                              "models, run in shadow mode ([[simulations]] tables; see "
                                              "tvilling.simulation.spec)")
    alarm_rules: list[dict[str, Any]] = Field(
        default_factory=list, description="alarm rules: [[alarm_rules]] tables (see tvilling.decisions.alarms.rules)")
    maintenance: dict[str, Any] = Field(default_factory=dict, description="maintenance planning: [maintenance] with "
                                        "[[maintenance.tasks]], technicians, parts, windows, downtime costs and "
                                        "decisions (see tvilling.planning.maintenance_service_config)")

    @field_validator("store")
    @classmethod
    def _known_store(cls, value: str | None) -> str | None:
        if value is None or value == "memory" or value.startswith(("postgresql://", "postgres://")):
            return value
        raise ValueError("store must be 'memory' or a postgresql:// URL (leave it unset for the embedded store)")

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        path = _config_path()
        if path is not None:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=path))
        return tuple(sources)


def _config_path() -> Path | None:
    explicit = os.environ.get(CONFIG_ENV)
    if explicit:
        path = Path(explicit)
        if not path.is_file():
            raise FileNotFoundError(f"{CONFIG_ENV}={explicit}: no such config file")
        return path
    default = Path("tvilling.toml")
    return default if default.is_file() else None


def load_settings(config_file: str | os.PathLike[str] | None = None, **overrides: Any) -> Settings:
    """Settings from the config file (``config_file``, else ``$TVILLING_CONFIG``, else ``./tvilling.toml``) and
    environment, with explicit ``overrides`` (None = not given). The process's environment is left as it was."""
    given = {k: v for k, v in overrides.items() if v is not None}
    if config_file is None:
        return Settings(**given)
    before = os.environ.get(CONFIG_ENV)
    os.environ[CONFIG_ENV] = os.fspath(config_file)
    try:
        return Settings(**given)
    finally:
        if before is None:
            os.environ.pop(CONFIG_ENV, None)
        else:
            os.environ[CONFIG_ENV] = before
