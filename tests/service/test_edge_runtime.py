"""`slewguard serve` with the shipped model on ONNX Runtime, torch, transformers and scipy
unimportable (the base install)."""

from __future__ import annotations

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


@pytest.mark.services
def test_daemon_serves_the_shipped_model_without_torch(mosquitto, tmp_path):
    http_port = services.free_port()
    data = config_data(tmp_path, mosquitto.port, model={"shipped": "default"},
                       http={"port": http_port}, inference={"max_batch": 4, "queue_size": 8})
    config_path = tmp_path / "slewguard.yaml"
    config_path.write_text(yaml.safe_dump(data))
    log_path = tmp_path / "serve.log"
    with open(log_path, "ab") as log:
        proc = subprocess.Popen([sys.executable, "-m", "slewguard.cli", "serve", "--config",
                                 str(config_path)], stdout=log, stderr=log,
                                env=blocked_env(tmp_path, ("torch", "transformers", "scipy")))
    messages = fleet_messages(2, 5)
    try:
        wait_ready(proc, http_port, log_path)
        services.publish(mosquitto.port, messages)
        outbox = tmp_path / "outbox.sqlite3"
        wait_until(lambda: len(outbox_rows(outbox)) >= len(messages), 120, "all windows")
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGTERM)
            assert proc.wait(60) == 0, log_path.read_text()[-3000:]
    rows = outbox_rows(outbox)
    assert sorted((r["sensor"], r["seq"]) for r in rows) == sorted(
        (f"s{i}", k) for i in (1, 2) for k in range(5))
    assert {r["model"] for r in rows} == {"default"}
    scored = [r for r in rows if not r["predicted"].startswith("sensor_fault")]
    assert scored and all(abs(sum(r["probabilities"].values()) - 1) < 1e-3 for r in scored)
    log = log_path.read_text()
    assert "runs on the onnx runtime, the signal stages on numpy's FFT" in log
    assert "blocked" not in log
