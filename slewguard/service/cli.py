"""``slewguard serve``, ``check-config``, ``baseline`` and ``simulate``: run, validate, inspect
and feed the daemon.

Example:
    $ slewguard check-config deploy/slewguard.example.yaml
    $ slewguard check-config -c deploy/slewguard.example.yaml --connect
    $ slewguard serve --config deploy/slewguard.example.yaml
    $ slewguard baseline show --config deploy/slewguard.example.yaml
    $ slewguard simulate --publish --broker 127.0.0.1:1883 --sensors 8 --rate 1 --count 100
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import socket
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from slewguard.service.config import ServiceConfig


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``serve``, ``check-config``, ``baseline`` and ``simulate`` to the top-level parser.

    Example:
        >>> parser = argparse.ArgumentParser(); register(parser.add_subparsers())
    """
    serve = subparsers.add_parser(
        "serve", help="run the edge daemon (MQTT in, diagnoses out, /metrics)",
        description="Run the daemon until SIGTERM/SIGINT; SIGHUP reloads the sinks.")
    add_config_arguments(serve, "YAML config file")
    serve.set_defaults(func=_serve)
    check = subparsers.add_parser(
        "check-config", help="validate a daemon config file (exit 2 on errors)",
        description="Validate a config file with the SLEWGUARD_* environment overrides and "
                    "check, without side effects, everything serve refuses at start: the "
                    "model directory (card, template version), writable outbox, alert-queue "
                    "and baseline paths, webhook templates; warn when http.port is taken. "
                    "Print every error with its key path.")
    add_config_arguments(check, "YAML config file")
    check.add_argument("--connect", action="store_true",
                       help="also connect to the MQTT broker and the InfluxDB (when "
                            "configured), as serve would")
    check.set_defaults(func=_check_config)
    base = subparsers.add_parser(
        "baseline", help="show or reset the bearings' commissioning baselines",
        description="Each bearing's first evidence.baseline_windows windows are its healthy "
                    "baseline; reset one after a repair or a sensor swap and it relearns.")
    base.add_argument("action", choices=("show", "reset"))
    add_config_arguments(base, "the daemon's YAML config file")
    base.add_argument("--bearing", default=None,
                      help="SITE/ASSET/BEARING/SENSOR to reset (default with reset: all)")
    base.set_defaults(func=_baseline)
    _add_simulate(subparsers)


def add_config_arguments(parser: argparse.ArgumentParser, help: str) -> None:
    """The config file, named the same way in every subcommand: ``FILE`` or ``-c/--config FILE``.

    Example:
        >>> p = argparse.ArgumentParser(); add_config_arguments(p, "config")
        >>> str(config_path(p.parse_args(["-c", "a.yaml"])))
        'a.yaml'
    """
    parser.add_argument("path", type=Path, nargs="?", default=None,
                        help=f"{help} (or give it with -c/--config)")
    parser.add_argument("-c", "--config", type=Path, default=None, dest="config_flag",
                        metavar="FILE", help=help)


def config_path(args: argparse.Namespace) -> Path:
    """The config file named either way; one line saying how when none or two are given."""
    positional, flag = args.path, args.config_flag
    if positional is not None and flag is not None and positional != flag:
        raise ValueError(f"two config files given ({positional} and -c {flag}): give one")
    if positional is None and flag is None:
        raise ValueError("no config file: give it as FILE or -c FILE")
    return positional if positional is not None else flag  # type: ignore[return-value]


def _add_simulate(subparsers: argparse._SubParsersAction) -> None:
    from slewguard.service.publisher import FleetSpec

    sim = subparsers.add_parser(
        "simulate", help="simulate a fleet of slewing-bearing sensors publishing over MQTT",
        description="A fleet of simulated sensors, some developing faults, publishing binary "
                    "windows on plant/<site>/<asset>/<bearing>/<sensor>/vib.")
    sim.add_argument("--publish", action="store_true",
                     help="publish to --broker (without it, only list the fleet)")
    sim.add_argument("--broker", default="127.0.0.1:1883", help="HOST:PORT (default: %(default)s)")
    sim.add_argument("--protocol", choices=("5", "3.1.1"), default="5",
                     help="MQTT protocol version (default: %(default)s)")
    sim.add_argument("--username", default=None, help="broker user; password from "
                     "$SLEWGUARD_MQTT__PASSWORD")
    sim.add_argument("--count", type=int, default=10, help="windows per sensor (default: "
                     "%(default)s)")
    sim.add_argument("--rate", type=float, default=1.0, help="rounds (one window from every "
                     "sensor) per second; 0 = as fast as possible (default: %(default)s)")
    fields = FleetSpec.model_fields
    for name in ("site", "sensors", "faulty_fraction", "bearing", "rpm", "sample_rate_hz",
                 "window_seconds", "snr_db", "max_severity", "ramp_windows", "healthy_windows",
                 "sample_format",
                 "seed"):
        field = fields[name]
        sim.add_argument(f"--{name.replace('_', '-')}", dest=name, default=field.default,
                         type=type(field.default), help=f"{field.description} "
                         "(default: %(default)s)")
    sim.set_defaults(func=_simulate)


def load_config_file(path: Path) -> ServiceConfig:
    """``config.load_config``, with a single error on one line (``FILE: key.path: message``)."""
    from slewguard.service.config import ConfigError, load_config

    try:
        return load_config(path)
    except ConfigError as exc:
        if len(exc.errors) == 1:
            raise ValueError(f"{path}: {exc.errors[0]}") from None
        raise


def _serve(args: argparse.Namespace) -> int:
    from slewguard.service.app import App

    path = config_path(args)
    config = load_config_file(path)
    configure_logging(config.logging.level, config.logging.format)
    return App(config, config_path=path).run()


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time, level, logger, message (and the exception, if any)."""

    def format(self, record: logging.LogRecord) -> str:
        doc = {"time": self.formatTime(record), "level": record.levelname,
               "logger": record.name, "message": record.getMessage()}
        if record.exc_info:
            doc["exception"] = self.formatException(record.exc_info)
        return json.dumps(doc)


def configure_logging(level: str, fmt: str) -> None:
    """Set the root level and the record format ("text" or "json") of every root handler.

    Example:
        >>> configure_logging("INFO", "json")
    """
    root = logging.getLogger()
    root.setLevel(level)
    if not root.handlers:
        root.addHandler(logging.StreamHandler())
    for handler in root.handlers:
        if fmt == "json":
            handler.setFormatter(JsonFormatter())


def _check_config(args: argparse.Namespace) -> int:
    from slewguard.service import preflight
    from slewguard.service.config import ConfigError, load_config

    path = config_path(args)
    try:
        config = load_config(path)
    except ConfigError as exc:
        return _report_errors(path, exc.errors)
    errors = preflight.start_problems(config)
    warnings = [p for p in [preflight.port_problem(config.http.host, config.http.port)] if p]
    if args.connect:
        errors.append(preflight.broker_problem(config.mqtt))
        errors += preflight.sink_connect_problems(config)
        errors = [e for e in errors if e is not None]
    for warning in warnings:  # the daemon of this very config may hold the port right now
        print(f"{path}: warning: {warning} (fine if this config's daemon is running)",
              file=sys.stderr)
    if errors:
        return _report_errors(path, errors)
    print(f"{path}: ok: {_summary(config)}" + (" (broker and database answered)"
                                               if args.connect else ""))
    return 0


def _report_errors(path: Path, errors: list[str]) -> int:
    if len(errors) == 1:
        print(f"{path}: {errors[0]}", file=sys.stderr)
        return 2
    print(f"{path}: {len(errors)} error(s)", file=sys.stderr)
    for error in errors:
        print(f"  {error}", file=sys.stderr)
    return 2


def _summary(config: ServiceConfig) -> str:
    m = config.mqtt
    sinks = [f"{name} ({sink.summary()})" for name, sink in config.sinks.items() if sink]
    return (f"site {config.site}, {len(config.sensors)} sensor entr"
            f"{'y' if len(config.sensors) == 1 else 'ies'}, broker {m.host}:{m.port} (MQTT "
            f"{m.protocol}), topics {', '.join(m.topics)}, outbox {config.outbox.path}, "
            f"sinks {', '.join(sinks) or 'none'}, "
            f"http {config.http.host}:{config.http.port}, model "
            f"{config.model.path or 'shipped ' + config.model.shipped}")


def _baseline(args: argparse.Namespace) -> int:
    from slewguard.service.baselines import BaselineStore
    from slewguard.service.evidence_stage import baseline_path

    config = load_config_file(config_path(args))
    path = baseline_path(config)
    store = BaselineStore(path, config.evidence.baseline_windows)
    if args.action == "reset":
        gone = store.reset(args.bearing)
        print(f"{path}: reset {len(gone)} bearing(s): {', '.join(gone) or '-'}; they relearn "
              f"from their next {config.evidence.baseline_windows} windows")
        return 0
    entries = store.entries()
    if not entries:
        print(f"{path}: no bearing has sent a window yet")
    for key, entry in entries.items():
        b = entry["baseline"]
        if b is None:
            print(f"{key}: learning, {entry['learning_windows']} of "
                  f"{config.evidence.baseline_windows} windows")
        else:
            note = " SUSPECT: race line at commissioning, deltas off" if b["suspect"] else ""
            print(f"{key}: rms {b['rms']:.4g}, kurtosis {b['kurtosis']:.2f} from "
                  f"{b['n_windows']} windows{note}")
    return 0


def parse_broker(text: str) -> tuple[str, int]:
    """``"host:port"`` -> ``(host, port)``; ValueError naming the bad value.

    Example:
        >>> parse_broker("127.0.0.1:1884")
        ('127.0.0.1', 1884)
    """
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"--broker {text!r} must be HOST:PORT, e.g. 127.0.0.1:1883")
    return host, int(port)


def _broker_down(broker: str, exc: OSError) -> str:
    """One line for a failed ``simulate --publish`` connection to ``broker``."""
    if isinstance(exc, ConnectionRefusedError):
        return (f"--broker {broker}: nothing listens there (connection refused): start the "
                "broker (e.g. `mosquitto -p PORT`) or pass --broker HOST:PORT of a running one")
    if isinstance(exc, socket.gaierror):
        return f"--broker {broker}: the host does not resolve ({exc.strerror}): fix --broker"
    if type(exc) is ConnectionError:  # publisher.connect's own: TCP up, no MQTT CONNACK
        return str(exc)
    return f"--broker {broker}: cannot connect ({exc.strerror or exc}): check --broker"


def _simulate(args: argparse.Namespace) -> int:
    from rich.progress import Progress

    from slewguard.service.publisher import Fleet, FleetSpec, Publisher, connect

    spec = FleetSpec(**{k: getattr(args, k) for k in FleetSpec.model_fields if hasattr(args, k)})
    fleet = Fleet(spec)
    if not args.publish:
        for s in fleet.sensors:
            print(f"{s.topic}  {s.fault}")
        print(f"{len(fleet.sensors)} sensors; add --publish --broker HOST:PORT to send windows")
        return 0
    host, port = parse_broker(args.broker)
    try:
        client = connect(host, port, username=args.username,
                         password=os.environ.get("SLEWGUARD_MQTT__PASSWORD"),
                         protocol=args.protocol)
    except OSError as exc:  # refused, unresolvable, timed out: one line, no traceback
        raise ValueError(_broker_down(args.broker, exc)) from None
    publisher = Publisher(fleet, client)
    try:
        with Progress(transient=True) as progress:
            task = progress.add_task("publishing", total=args.count * len(fleet.sensors))
            publisher.run(args.count, args.rate,
                          on_round=lambda n: progress.update(task, completed=n))
    finally:
        client.loop_stop()
        client.disconnect()
    print(f"published {publisher.published} windows from {len(fleet.sensors)} sensors to "
          f"{host}:{port}")
    return 0
