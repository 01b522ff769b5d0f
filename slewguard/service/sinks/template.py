"""Operator webhook templates rendered with bounded time, memory and output.

The Jinja2 sandbox stops attribute tricks, but not work: ``{{ ('a' * 200000000) | length }}``
allocates 200 MB in one C call and nested loops run as long as they like, neither of which
Python can interrupt inside the delivery thread. So each render runs in a short-lived child
interpreter (a start per render, affordable because events are rare; docs/tickets.md has the
time) under an address-space limit, is killed at its time limit, and stops itself once its
output passes the size limit. ``TemplateOverrunError`` names the limit hit; any other template
error is a ``TemplateError`` with one line of text.

Example:
    >>> render_template('{"key": {{ event.dedup_key | tojson }}}', {"dedup_key": "k1"})
    b'{"key": "k1"}'
    >>> try:
    ...     render_template("{{ ('a' * 200000000) | length }}", {})
    ... except TemplateOverrunError as exc:
    ...     exc.limit
    'memory'
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

OVERRUN_EXIT = {3: "size", 4: "memory"}  # child exit status -> the limit it hit
_CHILD = r"""
import json, sys
try:
    import resource
    limit = int(sys.argv[1])
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
except (ImportError, ValueError, OSError):
    pass
from jinja2.sandbox import SandboxedEnvironment
job = json.load(sys.stdin)
env = SandboxedEnvironment(autoescape=False, keep_trailing_newline=True)
out, size = [], 0
try:
    for piece in env.from_string(job["template"]).generate(event=job["event"]):
        piece = piece.encode("utf-8")
        size += len(piece)
        if size > job["max_bytes"]:
            sys.exit(3)
        out.append(piece)
    body = b"".join(out)
except MemoryError:
    sys.exit(4)
except Exception as exc:
    print(f"{type(exc).__name__}: {exc}"[:500].replace("\n", " "), file=sys.stderr)
    sys.exit(2)
sys.stdout.buffer.write(body)
"""


class TemplateError(RuntimeError):
    """The template failed (undefined name, sandbox refusal, syntax); no retry fixes it."""


class TemplateOverrunError(TemplateError):
    """The render hit a limit: ``limit`` is "time", "size" or "memory" (a metric label)."""

    def __init__(self, limit: str, message: str) -> None:
        self.limit = limit
        super().__init__(message)


@dataclass(frozen=True)
class TemplateLimits:
    """Bounds of one render. A ticket body is a few kB and renders in a fraction of the child
    interpreter's start; the limits leave room for the interpreter itself."""

    timeout_s: float = 2.0  # wall time, child start included
    max_bytes: int = 1 << 20  # rendered body
    address_space_bytes: int = 128 << 20  # the child's RLIMIT_AS: jinja2 and the event fit


DEFAULT_LIMITS = TemplateLimits()


def render_template(text: str, event: Mapping[str, Any],
                    limits: TemplateLimits = DEFAULT_LIMITS) -> bytes:
    """The rendered body of template ``text`` for ``event`` (JSON values), in the sandbox.

    Raises ``TemplateOverrunError`` at a limit and ``TemplateError`` on any other failure.
    """
    job = json.dumps({"template": text, "event": dict(event), "max_bytes": limits.max_bytes})
    # -P: nothing from the daemon's working directory is importable in the child
    command = [sys.executable, "-P", "-c", _CHILD, str(int(limits.address_space_bytes))]
    try:
        done = subprocess.run(command, input=job.encode("utf-8"),
                              capture_output=True, timeout=limits.timeout_s, check=False)
    except subprocess.TimeoutExpired:
        raise TemplateOverrunError("time", f"render ran past {limits.timeout_s:g} s (a loop too "
                              "long for an alert body?)") from None
    if done.returncode in OVERRUN_EXIT:
        limit = OVERRUN_EXIT[done.returncode]
        size = (f"{limits.max_bytes} bytes of output" if limit == "size" else
                f"{limits.address_space_bytes >> 20} MiB of memory")
        raise TemplateOverrunError(limit, f"render needed more than {size}")
    if done.returncode != 0:
        why = done.stderr.decode("utf-8", "replace").strip().splitlines()
        raise TemplateError(why[-1] if why else f"renderer exited {done.returncode}")
    return done.stdout
