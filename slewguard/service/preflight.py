"""What ``slewguard serve`` refuses at start, checked without side effects.

``App.start`` runs ``start_problems`` before it opens anything, and ``check-config`` runs the
same checks, so a config that passes ``check-config`` does not stop ``serve`` at its first
second: the model directory (card, textify template, runtime files; no weights are loaded), the
directories of the files the daemon writes (outbox, alert queue, baselines), and the webhook
templates. ``port_problem`` tries to bind the HTTP port (a warning in ``check-config``: the
daemon this config belongs to may be the one holding it); ``broker_problem`` and
``sink_connect_problems`` (each sink type's ``connect_problem``) connect (``check-config
--connect``). Every problem is one line: the key path, the cause, the fix.

Example:
    >>> from slewguard.service.config import config_from_dict
    >>> cfg = config_from_dict({"site": "y", "model": {"path": "no/such/model"},
    ...                         "sensors": [{"sensor_id": "s1", "bearing": "cwru-6205"}]}, env={})
    >>> model_problems(cfg)[0][:56]
    "model.path: 'no/such/model' does not exist: give the dir"
"""

from __future__ import annotations

import errno
import os
import socket
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from slewguard.service.config import ServiceConfig
    from slewguard.service.config.mqtt import MqttConfig


class StartError(ValueError):
    """``serve`` cannot start; ``problems`` holds one line per cause (key path, cause, fix)."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        text = problems[0] if len(problems) == 1 else (
            f"{len(problems)} problems:\n" + "\n".join(f"  {p}" for p in problems))
        super().__init__(text)


def start_problems(config: ServiceConfig, model: bool = True) -> list[str]:
    """Every reason ``serve`` would refuse ``config`` at start (the model's only with
    ``model``: an App given a classifier loads none). Empty when it would start.

    Example:
        >>> start_problems(cfg)   # doctest: +SKIP
        []
    """
    problems = model_problems(config) if model else []
    return problems + path_problems(config) + template_problems(config) + extra_problems(config)


def model_problems(config: ServiceConfig) -> list[str]:
    """The model directory: it exists, holds a card of this slewguard's textify template and
    the files its runtime reads (the weights are not loaded)."""
    from slewguard.models import card as model_card
    from slewguard.models.runtimes import choose_runtime, runtime_module
    from slewguard.models.shipped import shipped_model_dir
    from slewguard.signal.templates import template

    c = config.model
    key = "model.path" if c.path is not None else "model.shipped"
    path = Path(c.path) if c.path is not None else shipped_model_dir(c.shipped)
    if not path.exists():
        return [f"{key}: {str(path)!r} does not exist: give the directory `slewguard train` "
                "wrote (it holds card.json), or remove model.path to use the shipped model"]
    if not path.is_dir():
        return [f"{key}: {str(path)!r} is a file, not a model directory: give the directory "
                "`slewguard train` wrote (it holds card.json)"]
    try:
        card = model_card.read(path)
        model_card.check_template(card, path)
        runtime = choose_runtime(path, c.runtime, c.device, c.dtype)
    except ValueError as exc:
        return [f"{key}: {exc}"]
    if template(card.template_version).reads == "evidence" and not config.evidence.enabled:
        return [f"evidence.enabled: false, but the model at {path} reads the evidence stage "
                f"(textify template {card.template_version!r}): set evidence.enabled: true, or "
                "use a model of template 't1'"]
    missing = runtime_module(runtime).missing_files(path)
    if missing:
        return [f"{key}: {path} has a card but no {', '.join(missing)} (needed by the "
                f"{runtime} runtime): save the model again, or copy the whole directory"]
    return []


def extra_problems(config: ServiceConfig) -> list[str]:
    """Configured checks whose library the base install leaves out: the rpm-mismatch check of
    ``sensors[i].order_lines`` zooms into the spectrum with scipy (the signal extra).

    Example:
        >>> from slewguard.service.config import config_from_dict
        >>> cfg = config_from_dict({"site": "y", "sensors": [{"sensor_id": "s1",
        ...     "bearing": "cwru-6205", "order_lines": [87]}]}, env={})
        >>> problems = extra_problems(cfg)   # [] where scipy is installed
        >>> problems == [] or problems[0].startswith("sensors[0].order_lines: [87.0] needs")
        True
    """
    from slewguard.extras import available, install_command

    if available("scipy"):
        return []
    return [f"sensors[{i}].order_lines: {list(s.order_lines)} needs scipy, which this install "
            f"lacks: {install_command('signal')}, or remove order_lines"
            for i, s in enumerate(config.sensors) if s.order_lines]


def path_problems(config: ServiceConfig) -> list[str]:
    """The files the daemon writes: each is a writable file or can be created (its nearest
    existing parent is a writable directory)."""
    from slewguard.service.evidence_stage import baseline_path
    from slewguard.service.sinks.alerts import queue_path

    files = [("outbox.path", Path(config.outbox.path))]
    if config.alerts.enabled and config.alerts.queue_path is not None:
        files.append(("alerts.queue_path", Path(config.alerts.queue_path)))
    # the alert queue's default sits beside the outbox: its directory is the outbox's, but the
    # file itself may be there already and be something else
    databases = files[:1] + ([("alerts.queue_path", queue_path(config))]
                             if config.alerts.enabled else [])
    if config.evidence.enabled and config.evidence.baseline_path is not None:
        files.append(("evidence.baseline_path", baseline_path(config)))
    problems = [p for key, path in files if (p := writable_problem(key, path)) is not None]
    return problems + [p for key, path in databases if (p := sqlite_problem(key, path))]


SQLITE_HEADER = b"SQLite format 3\x00"


def sqlite_problem(key: str, path: Path) -> str | None:
    """None unless ``path`` is an existing, non-empty file that is not an SQLite database
    (which ``serve`` would refuse with "file is not a database"); read only, nothing written.

    Example:
        >>> import tempfile
        >>> with tempfile.NamedTemporaryFile(suffix=".sqlite3") as f:
        ...     _ = f.write(b"time,value"); f.flush()
        ...     "is not an SQLite database" in sqlite_problem("outbox.path", Path(f.name))
        True
    """
    try:
        if not path.is_file() or path.stat().st_size == 0:
            return None
        with open(path, "rb") as f:
            head = f.read(len(SQLITE_HEADER))
    except OSError:
        return None  # unreadable: writable_problem names it
    if head == SQLITE_HEADER:
        return None
    return (f"{key}: {str(path)!r} is not an SQLite database (it starts with {head[:8]!r}): "
            f"move that file away, or set {key} to a new file name")


def writable_problem(key: str, path: Path) -> str | None:
    """None when the daemon can write ``path`` (creating missing parents), else why not.

    Example:
        >>> writable_problem("outbox.path", Path("/proc/version/o.sqlite3"))[:45]
        "outbox.path: '/proc/version' is a file, not a"
    """
    fix = f"set {key} to a path in a writable directory"
    if path.is_dir():
        return f"{key}: {str(path)!r} is a directory, not a file: {fix} (a file name in it)"
    if path.exists():
        return None if os.access(path, os.W_OK) else (
            f"{key}: {str(path)!r} is not writable by this user: fix its owner or mode, or {fix}")
    parent = path.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        return f"{key}: {str(parent)!r} is a file, not a directory, so {str(path)!r} cannot " \
               f"be created: {fix}"
    if not os.access(parent, os.W_OK | os.X_OK):
        return f"{key}: directory {str(parent)!r} is not writable by this user, so " \
               f"{str(path)!r} cannot be created: fix its owner or mode, or {fix}"
    return None


def template_problems(config: ServiceConfig) -> list[str]:
    """Each ``format: template`` webhook's Jinja2 template parses (sandboxed, not rendered)."""
    problems: list[str] = []
    hooks = [(i, h) for i, h in enumerate(config.alerts.webhooks) if h.format == "template"]
    if not hooks:
        return problems
    from jinja2 import TemplateSyntaxError
    from jinja2.sandbox import SandboxedEnvironment

    for i, hook in hooks:
        key = f"alerts.webhooks.{i}.{'template_file' if hook.template_file else 'template'}"
        try:
            SandboxedEnvironment().parse(hook.template_text() or "")
        except OSError as exc:
            problems.append(f"{key}: cannot read {hook.template_file}: {exc.strerror}: fix "
                            "its mode or the path")
        except TemplateSyntaxError as exc:
            why = (exc.message or "syntax error").rstrip(".")
            problems.append(f"{key} (webhook {hook.name!r}): line {exc.lineno}: {why}: fix the "
                            "Jinja2 syntax")
    return problems


def bind_problem(exc: OSError, host: str, port: int) -> str:
    """One line for an OSError from binding the HTTP server to ``host:port``.

    Example:
        >>> bind_problem(OSError(errno.EADDRINUSE, "Address already in use"), "127.0.0.1", 9108)
        ... # doctest: +ELLIPSIS
        'http.port: 127.0.0.1:9108 is already in use by another process: stop it...'
    """
    where = f"{host}:{port}"
    if exc.errno == errno.EADDRINUSE:
        return (f"http.port: {where} is already in use by another process: stop it (another "
                "slewguard serve?), or set http.port (or SLEWGUARD_HTTP__PORT) to a free port")
    if exc.errno == errno.EACCES:
        return (f"http.port: binding {where} is not permitted (ports below 1024 need root): "
                "set http.port to 1024 or above")
    if exc.errno == errno.EADDRNOTAVAIL or isinstance(exc, socket.gaierror):
        return (f"http.host: {host!r} is not an address of this machine: set http.host to one "
                "of its addresses, 127.0.0.1, or 0.0.0.0 for all")
    return f"http.port: cannot bind {where}: {exc.strerror or exc}: set http.host/http.port"


def port_problem(host: str, port: int) -> str | None:
    """None when ``host:port`` can be bound now (the socket is closed at once), else why not."""
    if port == 0:
        return None
    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
        with socket.socket(family, socket.SOCK_STREAM) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as http.server does
            sock.bind((host, port))
    except OSError as exc:
        return bind_problem(exc, host, port)
    return None


def broker_problem(mqtt_config: MqttConfig, timeout_s: float = 10.0) -> str | None:
    """Connect to the broker as the daemon would (protocol, TLS, login) and disconnect; None
    when the broker accepted, else why not. Uses a throw-away client id, clean session."""
    from slewguard.service.mqtt_client import build_client

    c = mqtt_config
    where = f"{c.host}:{c.port}"
    client = build_client(c, f"{c.client_id}-check-{os.getpid()}", session=False,
                          reconnect=False)
    answer: dict[str, Any] = {}
    client.on_connect = lambda _c, _u, _f, reason, _p: answer.setdefault("reason", reason)
    try:
        client.connect(c.host, int(c.port), keepalive=int(c.keepalive_s))
    except OSError as exc:
        return network_problem("mqtt", where, exc)
    client.loop_start()
    try:
        deadline = time.monotonic() + timeout_s
        while "reason" not in answer and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        client.disconnect()
        client.loop_stop()
    reason = answer.get("reason")
    if reason is None:
        return (f"mqtt.host/mqtt.port: {where} accepted TCP but sent no MQTT answer in "
                f"{timeout_s:g} s: is it an MQTT broker (TLS port without mqtt.tls?)")
    if reason.is_failure:
        login = str(reason) in ("Not authorized", "Bad user name or password")
        what = "mqtt.username/mqtt.password" if login else "mqtt.protocol/mqtt.client_id"
        return f"{what}: broker {where} refused the connection: {reason}: fix {what}"
    return None


def network_problem(section: str, where: str, exc: OSError) -> str:
    """One line for a failed TCP (or TLS) connect to ``where``, keyed by config ``section``.

    Example:
        >>> network_problem("mqtt", "127.0.0.1:1", ConnectionRefusedError(111, "refused"))[:52]
        'mqtt.host/mqtt.port: nothing listens on 127.0.0.1:1 '
    """
    keys = f"{section}.host/{section}.port" if section == "mqtt" else f"{section}.url"
    if isinstance(exc, ConnectionRefusedError):
        return (f"{keys}: nothing listens on {where} (connection refused): start the server "
                f"or fix {keys}")
    if isinstance(exc, socket.gaierror):
        return f"{keys}: host of {where} does not resolve ({exc.strerror}): fix {keys}"
    if isinstance(exc, TimeoutError | socket.timeout):
        return f"{keys}: {where} did not answer (timed out): check {keys} and the firewall"
    tls = f" or {section}.tls" if section == "mqtt" else ""
    return f"{keys}: cannot connect to {where}: {exc.strerror or exc}: check {keys}{tls}"


def sink_connect_problems(config: ServiceConfig) -> list[str | None]:
    """``check-config --connect`` for every configured sink whose type can check its server
    (a ``connect_problem(name, settings)`` in its module); None where it answers."""
    from slewguard.service.sinks.registry import sink_type

    problems: list[str | None] = []
    for name, settings in config.sinks.items():
        check = getattr(sink_type(settings.type), "connect_problem", None) if settings else None
        if check is not None:
            problems.append(check(name, settings))
    return problems
