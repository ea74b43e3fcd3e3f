"""Settings: environment variables → typed, checked values.

Every variable is listed (with its default) in README.md, "Configuration". A bad value raises
:class:`ConfigError`, whose message names the variable and never repeats its value: several of
these are secrets.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import difflib
import errno
import ipaddress
import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import urlencode, urlsplit

from relay.targets import KINDS as TARGET_CLASSES
from relay.targets.spec import (  # noqa: F401 - re-exported: the configuration's vocabulary
    EVENT_TYPES,
    FILTER_WORDS,
    FORMATS,
    NAME,
    ConfigError,
    TargetSpec,
    Variable,
    parse_duration,
    parse_rate,
)

# Every variable the relay's processes read (the configuration tables in the docs list the same
# ones, with their defaults; tests compare the three). What is not here but looks like a setting
# of ours is warned about at start: a misspelt variable is otherwise silently ignored.
_OWN_VARIABLES = (
    Variable("REDIS_URL"),
    Variable("REDIS_TLS_VERIFY", deploy=True),
    Variable("RELAY_SENTINEL_PASSWORD", secret=True),
    Variable("RELAY_ACK_REPLICAS"),
    Variable("RELAY_ACK_TIMEOUT"),
    Variable("RELAY_CALLBACK_TOKEN", deploy=True, secret=True),
    Variable("RELAY_ALLOW_UNAUTHENTICATED"),
    Variable("RELAY_MAX_BODY_BYTES"),
    Variable("RELAY_DEDUP_TTL"),
    Variable("RELAY_HTTP_TIMEOUT"),
    Variable("RELAY_JOB_TIMEOUT"),
    Variable("RELAY_MAX_ATTEMPTS"),
    Variable("RELAY_BACKOFF"),
    Variable("RELAY_QUEUE"),
    Variable("RELAY_WORKER_THREADS"),
    Variable("RELAY_RECONCILE_AFTER"),
    Variable("RELAY_BREAKER_FAILURES"),
    Variable("RELAY_BREAKER_PROBE"),
    Variable("RELAY_BREAKER_PROBE_MAX"),
    Variable("RELAY_BREAKER_GIVE_UP"),
    Variable("SUNO_API_KEY", deploy=True, secret=True),
    Variable("SUNO_API_BASE"),
    Variable("SUNO_WEBHOOK_HMAC_KEY", deploy=True, secret=True),
    Variable("RELAY_PUBLIC_URL", deploy=True),
    Variable("RELAY_MODE", deploy=True),
    Variable("RELAY_POLL_INTERVAL"),
    Variable("RELAY_POLL_GRACE"),
    Variable("RELAY_POLL_DEADLINE"),
    Variable("RELAY_POLL_RATE"),
    Variable("LOG_LEVEL"),
    Variable("LOG_FORMAT"),
    Variable("PORT"),
    Variable("RELAY_DATA_DIR"),
    Variable("RELAY_TRUSTED_PROXIES", deploy=True),
    Variable("RELAY_WARNINGS_SHOWN"),
    Variable("WEB_CONCURRENCY"),
    Variable("GUNICORN_WORKER_CONNECTIONS"),
    Variable("RELAY_ACCESS_LOG"),
    Variable("RELAY_METRICS_TOKEN", deploy=True, secret=True),
    Variable("RELAY_DASHBOARD_USER", deploy=True),
    Variable("RELAY_DASHBOARD_PASSWORD", deploy=True, secret=True),
    Variable("PROMETHEUS_MULTIPROC_DIR"),
)


def variables() -> tuple[Variable, ...]:
    """Every setting: the relay's own, and each registered target kind's (its class declares them)."""
    return (*_OWN_VARIABLES, *(variable for cls in TARGET_CLASSES.values() for variable in cls.variables()))


def known_variables() -> frozenset[str]:
    return frozenset(variable.name for variable in variables())


VARIABLES = variables()  # as shipped; known_variables() also sees a kind registered later
KNOWN_VARIABLES = known_variables()
# Names that look like one of ours: a setting misspelt (SLACK_WEBHOOK, DISCORD_URL, TEAM_WEBHOOK_URL).
_OUR_PREFIXES = (
    "RELAY_", "SUNO_", "SLACK_", "DISCORD_", "TEAMS_", "TEAM_", "TELEGRAM_", "GOOGLE_CHAT_", "GOOGLECHAT_",
    "MATTERMOST_", "NTFY_", "APPRISE_",
)  # fmt: skip


def unknown_variables(environ: Mapping[str, str]) -> list[str]:
    """Warnings for set variables that look like a setting of ours but are none."""
    warnings = []
    known = known_variables()
    for name in sorted(environ):
        if name in known or name.startswith("RELAY_TEMPLATE_"):  # template=<name>'s source: any name
            continue
        if not (name.startswith(_OUR_PREFIXES) or name.endswith("_WEBHOOK_URL")):
            continue
        close = difflib.get_close_matches(name, sorted(known), n=1, cutoff=0.6)
        hint = f" (did you mean {close[0]}?)" if close else ""
        warnings.append(f"{name} is set, but suno-relay has no such setting{hint}: it is ignored")
    return warnings


def startup_warnings(settings: Settings, environ: Mapping[str, str], terminal: bool) -> list[str]:
    """What a process says once at its start (and ``check`` always): misspelt settings, half a
    dashboard login, target URLs that look wrong, and, with no terminal to print to, no target."""
    warnings = unknown_variables(environ)
    user, password = (
        bool(environ.get(name, "").strip()) for name in ("RELAY_DASHBOARD_USER", "RELAY_DASHBOARD_PASSWORD")
    )
    if user != password:
        given, missing = ("RELAY_DASHBOARD_USER", "RELAY_DASHBOARD_PASSWORD")[:: 1 if user else -1]
        warnings.append(f"{given} is set without {missing}: the page (/ui) and /rq stay off until both are set")
    warnings += settings.url_warnings()
    if not terminal and [spec.kind for spec in settings.targets] == ["console"]:
        warnings.append(
            "no target is configured: messages only go to this log (set SLACK_WEBHOOK_URL, DISCORD_WEBHOOK_URL, "
            "RELAY_WEBHOOK_URL or another target variable)"
        )
    return warnings


def check_port(environ: Mapping[str, str]) -> int:
    """``PORT`` as a number the web process can listen on; a busy port is a configuration error
    (before gunicorn, which would retry and log a dozen lines, then exit 1)."""
    raw = environ.get("PORT", "").strip() or "5000"
    if not raw.isdigit() or not 0 <= int(raw) < 65536:
        raise ConfigError("PORT must be a port number (0-65535)")
    port = int(raw)
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as gunicorn binds
        try:
            probe.bind(("0.0.0.0", port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise ConfigError(
                    f"PORT {port} is already in use: stop what listens there, or set PORT to a free port"
                ) from None
            raise ConfigError(f"PORT {port} cannot be listened on ({exc.strerror})") from None
    return port


def internal_address(host: str) -> str:
    """What kind of internal address ``host`` is ("a loopback address", …), or "" for a public
    one or a name. Decimal (``2130706433``), hex and octal IPv4 forms count as the address they
    spell: an HTTP client resolves them so."""
    host = host.strip("[]").lower()
    if host in ("localhost", "localhost.localdomain") or host.endswith(".localhost"):
        return "a loopback address"
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        try:
            address = ipaddress.IPv4Address(socket.inet_aton(host))  # 0x7f.1, 017700000001, 2130706433
        except OSError:
            return ""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped
    for test, said in (
        ("is_unspecified", "an unspecified address"),
        ("is_loopback", "a loopback address"),
        ("is_link_local", "a link-local address (cloud metadata lives there)"),
        ("is_private", "a private address"),
        ("is_reserved", "a reserved address"),
    ):
        if getattr(address, test):
            return said
    return ""


@dataclass(frozen=True)
class Settings:
    redis_url: str = field(default="redis://localhost:6379/0", repr=False)
    redis_tls_verify: bool = True
    callback_token: str = field(default="", repr=False)
    allow_unauthenticated: bool = False
    max_body_bytes: int = 1024 * 1024
    dedup_ttl: int = 7 * 86400
    queue_name: str = "relay"
    http_timeout: float = 10.0
    job_timeout: int = 180
    max_attempts: int = 12
    backoff: tuple[float, ...] = (5, 30, 120, 600, 1800, 3600, 7200, 14400)
    webhook_secret: bytes = field(default=b"", repr=False)
    targets: tuple[TargetSpec, ...] = ()
    log_level: str = "INFO"
    log_format: str = "auto"  # json | text | auto (text in a terminal)
    # The Suno side: submitting tasks, polling them, verifying signed callbacks.
    suno_api_base: str = "https://api.sunoapi.org"
    suno_api_key: str = field(default="", repr=False)
    suno_hmac_key: bytes = field(default=b"", repr=False)
    public_url: str = ""
    mode: str = "callback"  # callback | poll
    poll_interval: float = 30.0
    poll_grace: float = 30.0
    poll_deadline: float = 30 * 60.0
    poll_rate: tuple[int, float] = (20, 10.0)
    metrics_token: str = field(default="", repr=False)
    dashboard_user: str = ""
    worker_threads: int = 16
    reconcile_after: float = 60.0  # a pending delivery this long past due with no job is queued again
    dashboard_password: str = field(default="", repr=False)
    trusted_proxies: int = 0  # X-Forwarded-* hops trusted: 0 unless a proxy is in front
    sentinel_password: str = field(default="", repr=False)  # the sentinels' own (the nodes' is in REDIS_URL)
    # Replicas that must confirm an acknowledged write (WAIT), and how long to wait for them.
    ack_replicas: int = 0
    ack_timeout: float = 0.5
    # A target's breaker (relay.delivery.breaker): opens after this many failed attempts in a row,
    # probes after breaker_probe (doubling up to breaker_probe_max), gives a delivery up after
    # breaker_give_up held.
    breaker_failures: int = 10
    breaker_probe: float = 60.0
    breaker_probe_max: float = 1800.0
    breaker_give_up: float = 5 * 86400.0

    def callback_url(self, kind: str = "lyrics") -> str | None:
        """This relay's own callback URL for a task kind (token included), from RELAY_PUBLIC_URL;
        None without it."""
        base = self.public_url.rstrip("/")
        if not base:
            return None
        query = f"?{urlencode({'token': self.callback_token})}" if self.callback_token else ""
        return f"{base}/callbacks/suno/{kind}{query}"

    @property
    def target_names(self) -> tuple[str, ...]:
        return tuple(target.name for target in self.targets)

    def target(self, name: str) -> TargetSpec | None:
        return next((target for target in self.targets if target.name == name), None)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        reader = _Reader(env)
        webhook_secret = _webhook_secret(env.get("RELAY_WEBHOOK_SECRET", "").strip())
        targets = _targets(env)
        settings = cls(
            redis_url=_redis_url(env.get("REDIS_URL", "").strip() or cls.redis_url),
            redis_tls_verify=reader.boolean("REDIS_TLS_VERIFY", True),
            callback_token=env.get("RELAY_CALLBACK_TOKEN", "").strip(),
            allow_unauthenticated=reader.boolean("RELAY_ALLOW_UNAUTHENTICATED", False),
            max_body_bytes=int(reader.number("RELAY_MAX_BODY_BYTES", cls.max_body_bytes, minimum=1024)),
            dedup_ttl=int(reader.duration("RELAY_DEDUP_TTL", cls.dedup_ttl, minimum=3600)),
            queue_name=reader.name("RELAY_QUEUE", cls.queue_name),
            http_timeout=reader.duration("RELAY_HTTP_TIMEOUT", cls.http_timeout, minimum=0.1),
            job_timeout=int(reader.duration("RELAY_JOB_TIMEOUT", cls.job_timeout, minimum=5)),
            max_attempts=int(reader.number("RELAY_MAX_ATTEMPTS", cls.max_attempts, minimum=1)),
            backoff=reader.durations("RELAY_BACKOFF", cls.backoff),
            webhook_secret=webhook_secret,
            targets=targets,
            log_level=reader.choice("LOG_LEVEL", "INFO", {"DEBUG", "INFO", "WARNING", "ERROR"}),
            log_format=reader.choice("LOG_FORMAT", "auto", {"auto", "json", "text"}, lower=True),
            suno_api_base=_http_url(env, "SUNO_API_BASE", cls.suno_api_base),
            suno_api_key=env.get("SUNO_API_KEY", "").strip(),
            suno_hmac_key=env.get("SUNO_WEBHOOK_HMAC_KEY", "").strip().encode(),
            public_url=_http_url(env, "RELAY_PUBLIC_URL", ""),
            mode=reader.choice("RELAY_MODE", "callback", {"callback", "poll"}, lower=True),
            poll_interval=reader.duration("RELAY_POLL_INTERVAL", cls.poll_interval, minimum=0.5),
            poll_grace=reader.duration("RELAY_POLL_GRACE", cls.poll_grace, minimum=0),
            poll_deadline=reader.duration("RELAY_POLL_DEADLINE", cls.poll_deadline, minimum=1),
            poll_rate=parse_rate(reader.raw("RELAY_POLL_RATE") or "20/10s", "RELAY_POLL_RATE"),
            metrics_token=env.get("RELAY_METRICS_TOKEN", "").strip(),
            dashboard_user=env.get("RELAY_DASHBOARD_USER", "").strip(),
            worker_threads=int(reader.number("RELAY_WORKER_THREADS", cls.worker_threads, minimum=1)),
            reconcile_after=reader.duration("RELAY_RECONCILE_AFTER", cls.reconcile_after, minimum=1),
            dashboard_password=env.get("RELAY_DASHBOARD_PASSWORD", "").strip(),
            trusted_proxies=int(reader.number("RELAY_TRUSTED_PROXIES", 0, minimum=0)),
            sentinel_password=env.get("RELAY_SENTINEL_PASSWORD", "").strip(),
            ack_replicas=int(
                reader.number("RELAY_ACK_REPLICAS", 1 if "+sentinel://" in env.get("REDIS_URL", "") else 0, minimum=0)
            ),
            ack_timeout=reader.duration("RELAY_ACK_TIMEOUT", cls.ack_timeout, minimum=0.01),
            breaker_failures=int(reader.number("RELAY_BREAKER_FAILURES", cls.breaker_failures, minimum=1)),
            breaker_probe=reader.duration("RELAY_BREAKER_PROBE", cls.breaker_probe, minimum=0.1),
            breaker_probe_max=reader.duration("RELAY_BREAKER_PROBE_MAX", cls.breaker_probe_max, minimum=0.1),
            breaker_give_up=reader.duration("RELAY_BREAKER_GIVE_UP", cls.breaker_give_up, minimum=1),
        )
        if reader.raw("RELAY_BREAKER_GIVE_UP") is None:  # the default never outlives the events
            settings = dataclasses.replace(settings, breaker_give_up=min(cls.breaker_give_up, settings.dedup_ttl))
        elif settings.breaker_give_up > settings.dedup_ttl:
            raise ConfigError(
                "RELAY_BREAKER_GIVE_UP must not be longer than RELAY_DEDUP_TTL (a held event would expire first)"
            )
        if settings.breaker_probe_max < settings.breaker_probe:
            raise ConfigError("RELAY_BREAKER_PROBE_MAX must not be shorter than RELAY_BREAKER_PROBE")
        if settings.ack_replicas and settings.ack_timeout >= 4.0:
            raise ConfigError(
                "RELAY_ACK_TIMEOUT must stay under 4s (the door waits for Redis at most that plus 1s, and Suno 15s)"
            )
        if settings.http_timeout * 3 > settings.job_timeout:
            raise ConfigError("RELAY_HTTP_TIMEOUT must stay well below RELAY_JOB_TIMEOUT (at most a third of it)")
        own = settings.public_url.rstrip("/").lower() + "/callbacks/"
        for spec in targets:
            if settings.public_url and spec.kind != "apprise" and spec.url.lower().startswith(own):
                raise ConfigError(
                    f"target {spec.name} points at this relay's own callback URL (RELAY_PUBLIC_URL/callbacks/…): "
                    "every message would come back as a callback"
                )
        return settings

    def url_warnings(self) -> list[str]:
        """Target URLs that do not look like their service's (a Slack URL in DISCORD_WEBHOOK_URL,
        a plain http:// one): warnings, not errors, since proxies and self-hosted servers exist.
        Each names the target and the host only."""
        warnings = []
        for spec in self.targets:
            if spec.kind == "apprise":
                continue  # not HTTP URLs
            parts = urlsplit(spec.url)
            host = (parts.hostname or "").lower()
            expected = TARGET_CLASSES[spec.kind].expected_hosts
            if expected and not any(host == known or host.endswith("." + known) for known in expected):
                warnings.append(f"target {spec.name}: {host} is not a {spec.kind} host ({', '.join(expected)})")
            elif parts.scheme == "http" and host not in ("localhost", "127.0.0.1", "::1"):
                warnings.append(f"target {spec.name}: plain http:// to {host}: the URL travels unencrypted")
            internal = internal_address(host)
            if internal:
                warnings.append(
                    f"target {spec.name}: {host} is {internal}: the relay would post inside its own network "
                    "(fine for a local receiver; otherwise check the URL)"
                )
            if "/callbacks/suno/" in parts.path:
                warnings.append(f"target {spec.name}: the URL looks like a suno-relay callback URL: a loop?")
        return warnings

    def require_auth(self) -> None:
        """The web process must not start open to the world by accident."""
        if not self.callback_token and not self.allow_unauthenticated:
            raise ConfigError(
                "RELAY_CALLBACK_TOKEN is not set: callbacks could not be authenticated. Set it to a long random "
                "string (e.g. `python -c 'import secrets; print(secrets.token_urlsafe(32))'`), or set "
                "RELAY_ALLOW_UNAUTHENTICATED=1 to accept callbacks from anyone."
            )
        if self.callback_token and len(self.callback_token) < 16:
            raise ConfigError("RELAY_CALLBACK_TOKEN is too short: use at least 16 characters")


class _Reader:
    def __init__(self, env: Mapping[str, str]) -> None:
        self.env = env

    def raw(self, name: str) -> str | None:
        value = self.env.get(name, "").strip()
        return value or None

    def boolean(self, name: str, default: bool) -> bool:
        value = self.raw(name)
        if value is None:
            return default
        if value.lower() in {"1", "true", "yes", "on"}:
            return True
        if value.lower() in {"0", "false", "no", "off"}:
            return False
        raise ConfigError(f"{name} must be a boolean (1/0, true/false, yes/no, on/off)")

    def number(self, name: str, default: float, minimum: float) -> float:
        value = self.raw(name)
        if value is None:
            return default
        try:
            number = float(value)
        except ValueError:
            raise ConfigError(f"{name} must be a number") from None
        if not number >= minimum:
            raise ConfigError(f"{name} must be at least {minimum:g}")
        return number

    def duration(self, name: str, default: float, minimum: float) -> float:
        value = self.raw(name)
        if value is None:
            return default
        seconds = parse_duration(value, name)
        if seconds < minimum:
            raise ConfigError(f"{name} must be at least {minimum:g} seconds")
        return seconds

    def durations(self, name: str, default: tuple[float, ...]) -> tuple[float, ...]:
        value = self.raw(name)
        if value is None:
            return default
        return tuple(parse_duration(part, name) for part in value.split(","))

    def name(self, name: str, default: str) -> str:
        value = self.raw(name) or default
        if not NAME.match(value):
            raise ConfigError(f"{name} must be lowercase letters, digits, '-' or '_' (at most 40)")
        return value

    def choice(self, name: str, default: str, choices: set[str], lower: bool = False) -> str:
        """One of ``choices``, in any case; the message lists them as they are documented."""
        raw = self.raw(name) or default
        value = raw.lower() if lower else raw.upper()
        if value not in choices:
            raise ConfigError(f"{name} must be one of {', '.join(sorted(choices))}")
        return value


def _http_url(env: Mapping[str, str], name: str, default: str) -> str:
    value = env.get(name, "").strip().rstrip("/") or default
    if value and (urlsplit(value).scheme not in {"http", "https"} or not urlsplit(value).hostname):
        raise ConfigError(f"{name} must be an http(s) URL")
    return value


def _redis_url(url: str) -> str:
    from relay.store.connection import sentinel_url

    scheme = urlsplit(url).scheme
    if scheme in {"redis+sentinel", "rediss+sentinel"}:
        try:
            sentinel_url(url)
        except ValueError as exc:
            raise ConfigError(f"REDIS_URL: {exc}") from None
        return url
    if scheme not in {"redis", "rediss", "unix"}:
        raise ConfigError("REDIS_URL must start with redis://, rediss://, unix:// or redis+sentinel://")
    return url


def _webhook_secret(value: str) -> bytes:
    if not value:
        return b""
    encoded = value.removeprefix("whsec_")
    try:
        secret = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise ConfigError("RELAY_WEBHOOK_SECRET must be 'whsec_' followed by base64 (Standard Webhooks)") from None
    if len(secret) < 16:
        raise ConfigError("RELAY_WEBHOOK_SECRET is too short: use at least 16 random bytes (24+ base64 characters)")
    return secret


def _targets(env: Mapping[str, str]) -> tuple[TargetSpec, ...]:
    """Every target kind's targets (their classes read their own variables: relay.targets);
    options go in each URL's fragment, which is never sent to the target:
    ``https://hooks.slack.com/services/T/B/X#name=ops&only=failed&rate=1/1s&format=brief``."""
    specs: list[TargetSpec] = []
    for cls in TARGET_CLASSES.values():
        found = cls.specs(env)
        cls.check_environment(env, found)
        specs += found
    names = [spec.name for spec in specs]
    duplicated = sorted({name for name in names if names.count(name) > 1})
    if duplicated:
        raise ConfigError(f"target names must be unique; repeated: {', '.join(duplicated)} (set #name=... on a URL)")
    if not specs:
        console = TARGET_CLASSES["console"]
        specs.append(TargetSpec(kind="console", name="console", rate=console.default_rate))
    from relay.targets.template import load as load_template

    specs = [
        dataclasses.replace(
            spec, template=load_template(spec.template_name, env, spec.wants, json_body=spec.kind == "webhook")
        )
        if spec.template_name
        else spec
        for spec in specs
    ]
    return tuple(specs)
