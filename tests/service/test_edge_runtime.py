"""`slewguard serve` with the shipped model on ONNX Runtime, torch, transformers and scipy
unimportable (the base install)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest
import yaml

from tests.models.no_torch import blocked_env
from tests.service import services
from tests.service.services import wait_until
from tests.service.test_app import config_data, fleet_messages, outbox_rows, wait_ready


def serve_and_publish(tmp_path, broker_port: int, messages, env, argv=("--config",),
                      **sections) -> str:
    """Run ``slewguard serve`` on a config of ``sections``, publish ``messages``, wait until the
    outbox holds them all, SIGTERM (exit 0); returns the daemon's log."""
    http_port = services.free_port()
    data = config_data(tmp_path, broker_port, http={"port": http_port},
                       inference={"max_batch": 4, "queue_size": 8}, **sections)
    config_path = tmp_path / "slewguard.yaml"
    config_path.write_text(yaml.safe_dump(data))
    log_path = tmp_path / "serve.log"
    with open(log_path, "ab") as log:
        proc = subprocess.Popen([sys.executable, "-m", "slewguard.cli", "serve", *argv,
                                 str(config_path)], stdout=log, stderr=log, env=env)
    try:
        wait_ready(proc, http_port, log_path)
        services.publish(broker_port, messages)
        outbox = tmp_path / "outbox.sqlite3"
        wait_until(lambda: len(outbox_rows(outbox)) >= len(messages), 120, "all windows")
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGTERM)
            assert proc.wait(60) == 0, log_path.read_text()[-3000:]
    return log_path.read_text()


@pytest.mark.services
def test_daemon_serves_the_shipped_model_without_torch(mosquitto, tmp_path):
    log = serve_and_publish(tmp_path, mosquitto.port, fleet_messages(2, 5),
                            blocked_env(tmp_path, ("torch", "transformers", "scipy")),
                            model={"shipped": "default"})
    rows = outbox_rows(tmp_path / "outbox.sqlite3")
    assert sorted((r["sensor"], r["seq"]) for r in rows) == sorted(
        (f"s{i}", k) for i in (1, 2) for k in range(5))
    assert {r["model"] for r in rows} == {"default"}
    scored = [r for r in rows if not r["predicted"].startswith("sensor_fault")]
    assert scored and all(abs(sum(r["probabilities"].values()) - 1) < 1e-3 for r in scored)
    assert "runs on the onnx runtime, the signal stages on numpy's FFT" in log
    assert "blocked" not in log


@pytest.mark.services
def test_serve_on_torch_logs_json_lines_and_no_progress_bar(mosquitto, tmp_path):
    # under systemd stderr is the journal: one JSON object per line, no tqdm redraws from
    # transformers' "Loading weights" bar
    env = {k: v for k, v in os.environ.items()
           if k not in ("HF_HUB_DISABLE_PROGRESS_BARS", "TQDM_DISABLE")}
    text = serve_and_publish(tmp_path, mosquitto.port, fleet_messages(1, 3), env, argv=(),
                             model={"shipped": "fast", "runtime": "torch"},
                             logging={"format": "json"})
    assert "Loading weights" not in text and "\r" not in text, text[:2000]
    records = [json.loads(line) for line in text.splitlines() if line.strip()]
    assert all(set(r) >= {"time", "level", "logger", "message"} for r in records)
    said = [r["message"] for r in records]
    assert any(m.startswith("connected to 127.0.0.1:") for m in said), said
    assert any("runs on the torch runtime" in m for m in said), said
    assert any(m.startswith("stopping: draining") for m in said), said
