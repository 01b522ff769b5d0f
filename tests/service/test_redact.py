"""Credentials never shown with a URL: the helper, config errors, check-config, sink errors."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest
import yaml

from slewguard.service.config import ConfigError, config_from_dict
from slewguard.service.redact import redact_url, redact_urls

SECRETS = ("hunter2", "s3cr3t-tok", "abc123")


@pytest.mark.parametrize("url,shown", [
    ("https://admin:hunter2@influx:8086", "https://***@influx:8086"),
    ("http://s3cr3t-tok@influx:8086/", "http://***@influx:8086/"),
    ("admin:hunter2@influx:8086", "***@influx:8086"),  # no scheme: the case that errors
    ("http://h:8086/write?db=x&u=me&p=hunter2", "http://h:8086/write?db=x&u=***&p=***"),
    ("http://h/?org=o&token=s3cr3t-tok&bucket=b", "http://h/?org=o&token=***&bucket=b"),
    ("http://h/cb#access_token=abc123", "http://h/cb#access_token=***"),
    ("http://h/x?apiKey=abc123", "http://h/x?apiKey=***"),
    ("http://127.0.0.1:8086", "http://127.0.0.1:8086"),
    ("http://h/?email=a@b.c&org=o", "http://h/?email=a@b.c&org=o"),
    ("http://[::1]:8086/{x}", "http://[::1]:8086/{x}"),
])
def test_redact_url(url, shown):
    assert redact_url(url) == shown


def test_redact_urls_in_free_text():
    text = ("HTTPConnectionPool(host='h', port=1): Max retries exceeded with url: "
            "/write?u=me&p=hunter2 (caused by http://admin:hunter2@h:1/)")
    assert "hunter2" not in redact_urls(text) and "/write?u=***&p=***" in redact_urls(text)


def minimal(**sections) -> dict:
    return {"site": "y", "sensors": [{"topic_filter": "plant/+/+/+/+/vib",
                                      "bearing": "slew-4pc-1000"}], **sections}


@pytest.mark.parametrize("bad", [
    {"sinks": {"db": {"type": "influx", "url": "admin:hunter2@influx:8086"}}},
    {"sinks": {"db": {"type": "influx",
                      "url": "ftp://admin:hunter2@influx:8086/?token=s3cr3t-tok"}}},
    {"alerts": {"webhooks": [{"name": "t", "url": "hooks.example/x?token=s3cr3t-tok"}]}},
    {"alerts": {"webhooks": [{"name": "t", "url": "ftp://admin:hunter2@h/"}]}},
])
def test_a_bad_url_error_names_the_key_but_not_the_credentials(bad):
    with pytest.raises(ConfigError) as exc:
        config_from_dict(minimal(**bad), env={})
    text = str(exc.value)
    assert "url='" in text and "must start with http:// or https://" in text
    assert not any(s in text for s in SECRETS), text


def test_check_config_redacts_the_influx_url_in_errors_and_in_the_summary(tmp_path):
    run = [sys.executable, "-m", "slewguard.cli", "check-config"]
    bad, good = tmp_path / "bad.yaml", tmp_path / "good.yaml"
    bad.write_text(yaml.safe_dump(minimal(sinks={"db": {
        "type": "influx", "url": "admin:hunter2@influx:8086"}})))
    good.write_text(yaml.safe_dump(minimal(sinks={"db": {
        "type": "influx", "url": "http://admin:hunter2@influx:8086/?token=s3cr3t-tok"}})))
    out = subprocess.run([*run, str(bad)], capture_output=True, text=True)
    assert out.returncode == 2 and "sinks.db: url='***@influx:8086' must start" in out.stderr
    ok = subprocess.run([*run, str(good)], capture_output=True, text=True)
    assert ok.returncode == 0 and "sinks db (influx http://***@influx:8086/?token=***)" in ok.stdout
    assert not any(s in out.stderr + ok.stdout + ok.stderr for s in SECRETS)


def test_influx_connection_error_does_not_carry_the_password():
    from slewguard.service.sinks import RetryableSinkError
    from slewguard.service.sinks.influx import InfluxConfig, InfluxSink
    from tests.service.services import free_port
    from tests.service.test_influx_sink import results

    url = f"http://admin:hunter2@127.0.0.1:{free_port()}/?u=me&p=hunter2"
    sink = InfluxSink(InfluxConfig(url=url, token="t", timeout_s=2.0))
    with pytest.raises(RetryableSinkError, match="connection") as exc:
        sink.write(results(1))
    assert "hunter2" not in str(exc.value) and "127.0.0.1" in str(exc.value)


def test_webhook_retry_log_masks_a_token_in_the_url(tmp_path, caplog):
    from tests.service.test_alerts import result
    from tests.service.test_webhook import Receiver, sink_for

    receiver = Receiver()  # down: every attempt is refused
    url = f"{receiver.url}?token=s3cr3t-tok"
    with caplog.at_level("WARNING", logger="slewguard"):
        sink = sink_for(receiver, tmp_path / "alerts.sqlite3", url=url)
        try:
            sink.write([result(k, "outer_race", db=8.0) for k in range(3)])
            deadline = time.monotonic() + 10
            while "is down" not in caplog.text and time.monotonic() < deadline:
                time.sleep(0.05)
        finally:
            sink.close()
    assert f"retrying with backoff: {receiver.url}?token=*** answered nothing" in caplog.text
    assert "s3cr3t-tok" not in caplog.text
