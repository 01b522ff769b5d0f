import argparse
import json
import os
import re
import signal
import socket
import threading
import time
from pathlib import Path

import matplotlib.image
import pytest

from slewguard import demo
from slewguard.cli import main
from slewguard.demo_stream import mosquitto_binary
from slewguard.models.shipped import shipped_model_dir
from slewguard.signal.rule import LINE_DB
from slewguard.signal.scenario import FAULT_CLASSES
from slewguard.signal.textify import parse


def test_demo_writes_the_envelope_plot_and_prints_parseable_texts(tmp_path, capsys):
    out = tmp_path / "out"
    argv = ["demo", "--rpm", "12", "--window-seconds", "20", "--snr-db", "10", "--out", str(out),
            "--signal-only"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    png = out / "envelope_spectra.png"
    assert png.exists() and png.stat().st_size > 20_000
    pixels = matplotlib.image.imread(png)
    assert pixels.shape[0] > 400 and pixels.std() > 0.05  # not a blank canvas
    texts = {}
    for line in printed.splitlines():
        if line.startswith("text "):
            fault, text = line.removeprefix("text ").split(": ", 1)
            texts[fault] = text
    # 20 s at 12 rpm hold under 3 cage (FTF) periods: the demo says so instead of a text
    assert set(texts) == set(FAULT_CLASSES) - {"cage"} and "skip cage: " in printed
    version = demo.model_template(argparse.Namespace(model=None))
    assert f"texts the model reads (template {version}):" in printed
    if version == "t1":
        parsed = {fault: parse(text) for fault, text in texts.items()}
        assert parsed["outer_race"]["env_bpfo_h1_db"] >= 5
        assert parsed["inner_race"]["env_bpfi_h1_db"] >= 5
        assert parsed["rolling_element"]["env_bsf2_h1_db"] >= 5
        assert parsed["healthy"]["env_bpfo_h1_db"] < 5
    else:  # t3: "outer N inner N level L", N >= 5 from 12 dB (the rule's threshold) up
        words = {fault: text.split() for fault, text in texts.items()}
        assert all(w[::2] == ["outer", "inner", "level"] for w in words.values()), words
        assert int(words["outer_race"][1]) >= 5 > int(words["outer_race"][3])
        assert int(words["inner_race"][3]) >= 5 > int(words["inner_race"][1])
        assert int(words["healthy"][1]) < 5 and int(words["healthy"][3]) < 5
    # the table reads healthy as the daemon does: no line at the threshold, rule healthy
    healthy_row = next(line for line in printed.splitlines() if line.startswith("│ healthy "))
    cells = [c.strip() for c in healthy_row.strip("│").split("│")]
    assert all(float(c) < LINE_DB for c in cells[1:5]), healthy_row
    assert cells[-2:] == ["none", "healthy"], healthy_row


def test_demo_healthy_evidence_is_below_the_rule_threshold():
    args = argparse.Namespace(bearing="slew-4pc-1000", rpm=6.0, snr_db=0.0, window_seconds=20.0,
                              sample_rate_hz=5000.0, seed=0)
    baseline = demo.commissioning_baseline(args)
    views = {f: demo.analyse_class(f, args, baseline) for f in ("healthy", "outer_race")}
    healthy = views["healthy"].panel.evidence
    assert max(healthy[f"{line}_h1_db"] for line in demo.TABLE_LINES) < LINE_DB
    assert views["healthy"].panel.verdict == "healthy"
    assert views["outer_race"].panel.verdict == "outer_race"


def test_demo_reports_bad_settings_without_a_traceback(tmp_path, capsys):
    argv = ["demo", "--bearing", "no-such-bearing", "--out", str(tmp_path)]
    assert main(argv) == 2
    assert "no-such-bearing" in capsys.readouterr().err


@pytest.fixture(scope="module")
def model_cache(tmp_path_factory):
    """One cache for both stream tests: the first trains the fallback model, the second reuses it
    (when the package ships its model, both load that instead)."""
    return tmp_path_factory.mktemp("slewguard-cache")


def run_stream_demo(tmp_path, monkeypatch, capsys, cache, broker, extra=()):
    monkeypatch.setenv("SLEWGUARD_CACHE", str(cache))
    out = tmp_path / "out"
    argv = ["demo", "--broker", broker, "--windows", "2", "--sensors", "4", "--rate-hz", "0",
            "--out", str(out), *extra]
    code = main(argv)
    printed = capsys.readouterr().out
    assert code == 0, printed
    return json.loads((out / "stream_summary.json").read_text()), printed, out


def check_summary(summary, printed, out):
    why = f"summary {summary}\noutput:\n{printed}"  # shown when an assert fails
    assert summary["published"] == summary["stored"] == 2 * 4, why  # every window stored
    assert summary["rejected"] == 0 and summary["missing"] == [], why
    assert 0.0 <= summary["accuracy"] <= 1.0, why
    assert set(summary["recall"]) == {"healthy", "inner_race", "outer_race"}, why  # 2 of 4 faulty
    assert summary["throughput_windows_per_s"] > 0, why
    latency = summary["latency_ms"]
    assert 0 < latency["p50"] <= latency["p90"] <= latency["p99"], why
    assert summary["stage_mean_ms"]["inference"] > 0, why
    assert summary["prometheus_windows_processed"] == 8, why  # scraped over HTTP
    assert (out / "envelope_spectra.png").exists()  # the signal part ran first
    assert re.search(r"metrics\s+http://127\.0\.0\.1:\d+/metrics", printed), why
    assert "accuracy" in printed and "8 of 8 published windows" in printed, why
    port = int(re.search(r"on 127\.0\.0\.1:(\d+)", printed).group(1))
    with pytest.raises(OSError):  # the embedded broker is gone
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    outbox = re.search(r"outbox\s+(\S+outbox\.sqlite3)", printed).group(1)
    assert not Path(outbox).parent.exists(), why  # the temp dir with the outbox is removed
    alive = {t.name for t in threading.enumerate()}
    assert not alive & {"sensors", "pipeline", "forwarder", "amqtt"}, alive


@pytest.mark.skipif(mosquitto_binary() is None, reason="mosquitto not installed (apt: mosquitto)")
def test_demo_streams_a_fleet_through_mosquitto_and_accounts_for_every_window(
        tmp_path, monkeypatch, capsys, model_cache):
    summary, printed, out = run_stream_demo(tmp_path, monkeypatch, capsys, model_cache,
                                            "mosquitto")
    assert "mosquitto on 127.0.0.1" in printed and "(MQTT 5)" in printed
    check_summary(summary, printed, out)


def test_demo_falls_back_to_amqtt_in_process(tmp_path, monkeypatch, capsys, model_cache):
    summary, printed, out = run_stream_demo(tmp_path, monkeypatch, capsys, model_cache, "amqtt")
    assert "amqtt on 127.0.0.1" in printed and "(MQTT 3.1.1)" in printed
    check_summary(summary, printed, out)


@pytest.mark.skipif(not (shipped_model_dir("fast") / "card.json").is_file(),
                    reason="no fast model shipped in slewguard/models/fast (docs/models.md: "
                    "the shipped models)")
def test_demo_runs_the_fast_shipped_model_by_name(tmp_path, monkeypatch, capsys, model_cache):
    monkeypatch.chdir(tmp_path)  # "fast" is no directory here: the shipped model's name
    summary, printed, out = run_stream_demo(tmp_path, monkeypatch, capsys, model_cache, "amqtt",
                                            ["--model", "fast"])
    assert "from --model" in printed and str(shipped_model_dir("fast")) in printed
    check_summary(summary, printed, out)


def test_demo_rejects_a_fleet_without_windows(tmp_path):
    with pytest.raises(SystemExit):
        main(["demo", "--windows", "two"])
    assert main(["demo", "--windows", "0", "--out", str(tmp_path)]) == 2
    assert main(["demo", "--model", str(tmp_path), "--out", str(tmp_path)]) == 2
    assert main(["demo", "--model", "quick", "--out", str(tmp_path)]) == 2  # no such shipped one


@pytest.mark.skipif(mosquitto_binary() is None, reason="mosquitto not installed (apt: mosquitto)")
def test_ctrl_c_stops_sensors_daemon_and_broker(tmp_path, monkeypatch, capsys, model_cache):
    monkeypatch.setenv("SLEWGUARD_CACHE", str(model_cache))

    before = {t.ident for t in threading.enumerate()}  # an earlier demo's thread does not count
    pressed: list[float] = []

    def press_ctrl_c_once_sensors_run():
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if any(t.name == "sensors" and t.ident not in before for t in threading.enumerate()):
                time.sleep(1.0)  # a few windows in flight; 40 more to go
                os.kill(os.getpid(), signal.SIGINT)  # KeyboardInterrupt in the main thread
                pressed.append(time.monotonic())
                return
            time.sleep(0.05)

    # Ctrl-C is the default SIGINT handler (KeyboardInterrupt in the main thread); make sure no
    # earlier test in this process left another one installed.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    presser = threading.Thread(target=press_ctrl_c_once_sensors_run, daemon=True)
    presser.start()
    argv = ["demo", "--broker", "mosquitto", "--windows", "20", "--sensors", "2",
            "--rate-hz", "1", "--out", str(tmp_path)]
    try:
        code = main(argv)
    finally:
        signal.signal(signal.SIGINT, previous)
    presser.join(5)
    printed = capsys.readouterr().out
    assert code == 130, (f"Ctrl-C pressed: {bool(pressed)}; SIGINT handler before the test: "
                         f"{previous!r}\n{printed}")
    assert "interrupted" in printed and "stopped cleanly" in printed
    assert not (tmp_path / "stream_summary.json").exists()
    port = int(re.search(r"on 127\.0\.0\.1:(\d+)", printed).group(1))
    with pytest.raises(OSError):  # mosquitto was stopped
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    outbox = re.search(r"outbox\s+(\S+outbox\.sqlite3)", printed).group(1)
    assert not Path(outbox).parent.exists()
    alive = {t.name for t in threading.enumerate()}
    assert not alive & {"sensors", "pipeline", "forwarder"}, alive
