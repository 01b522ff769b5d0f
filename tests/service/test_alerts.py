"""Bearing-state voting, hysteresis, kinematic 'unknown', idempotence, gauges, durable states."""

import subprocess

import paho.mqtt.client as mqtt
import pytest
from prometheus_client import CollectorRegistry, generate_latest

from slewguard.service.alerts import STATE_CODES, AlertMetrics, Voter, dedup_key, vote
from slewguard.service.config import ConfigError, config_from_dict
from slewguard.service.config.alerts import AlertsConfig
from slewguard.service.metrics import Metrics
from slewguard.service.result import Result
from slewguard.service.sinks import alerts as alert_sink
from slewguard.service.sinks.alerts import AlertSink
from slewguard.service.sinks.registry import SinkContext
from tests.service import services

T0 = 1_700_000_000_000_000_000
STEP = 10**9
LINE_OF = {"outer_race": "bpfo", "inner_race": "bpfi", "rolling_element": "bsf2", "cage": "ftf"}


def result(k: int, predicted: str, confidence: float = 0.9, db: float = 10.0,
           sensor: str = "s1", bearing: str = "slew", **features) -> Result:
    """Window k of a sensor; the envelope level at the predicted fault's line is ``db``."""
    env = {f"env_{line}_h1_db": 0.5 for line in ("ftf", "bpfo", "bpfi", "bsf2")}
    if predicted in LINE_OF:
        env[f"env_{LINE_OF[predicted]}_h1_db"] = db
    probabilities = {"healthy": 1 - confidence, predicted: confidence}
    return Result("yard1", "crane1", bearing, sensor, "tiny", predicted, confidence,
                  probabilities, {"rms": 0.2, "kurtosis": 3.1, "crest_factor": 4.0, **env,
                                  **features}, 6.0, k, T0 + k * STEP, "t")


def feed(voter: Voter, labels: list[str], start: int = 0, **kw) -> list[dict]:
    events = []
    for i, label in enumerate(labels):
        events += voter.feed(result(start + i, label, **kw))
    return events


def kinds(events: list[dict]) -> list[tuple[str, str]]:
    return [(e["event"], e["fault"]) for e in events]


def test_k_of_n_enters_only_on_enough_votes():
    voter = Voter(AlertsConfig(k=3, n=5))
    assert feed(voter, ["outer_race", "healthy", "outer_race", "healthy"]) == []
    events = feed(voter, ["outer_race"], start=4)
    assert kinds(events) == [("firing", "outer_race")]
    assert voter.trackers["yard1/crane1/slew"].state == "outer_race"


def test_hysteresis_holds_the_state_until_exit_votes_are_lost():
    voter = Voter(AlertsConfig(k=3, n=5))  # enter with 3 of 5, held while >= 2 of 5
    feed(voter, ["outer_race"] * 5)
    # Alternating votes would flap a plain majority; here they keep the fault open.
    assert feed(voter, ["healthy", "outer_race", "healthy", "outer_race", "healthy"], 5) == []
    events = feed(voter, ["healthy", "healthy", "healthy"], start=10)
    assert kinds(events) == [("resolved", "outer_race")]
    assert events[0]["status"] == "resolved" and events[0]["state"] == "healthy"


def test_per_class_enter_and_exit_thresholds():
    config = AlertsConfig(k=3, n=5, enter_k={"cage": 5}, exit_k={"cage": 1})
    voter = Voter(config)
    assert feed(voter, ["cage"] * 4) == []
    assert kinds(feed(voter, ["cage"], start=4)) == [("firing", "cage")]
    assert feed(voter, ["healthy"] * 4, start=5) == []  # one cage vote of 5 still holds it
    assert kinds(feed(voter, ["healthy"], start=9)) == [("resolved", "cage")]


def test_low_confidence_and_missing_envelope_peak_vote_unknown():
    config = AlertsConfig(min_confidence=0.6, kinematic_min_db=3.0)
    assert vote(result(0, "outer_race", confidence=0.5, db=20.0), config) == "unknown"
    assert vote(result(0, "outer_race", db=1.0), config) == "unknown"
    assert vote(result(0, "outer_race", db=float("nan")), config) == "unknown"
    assert vote(result(0, "outer_race", db=3.0), config) == "outer_race"
    assert vote(result(0, "inner_race", db=8.0), config) == "inner_race"
    assert vote(result(0, "healthy"), config) == "healthy"
    voter = Voter(config)
    assert feed(voter, ["outer_race"] * 5, db=0.5) == []
    assert voter.trackers["yard1/crane1/slew"].state == "unknown"


def test_sensor_fault_from_prediction_or_flag():
    config = AlertsConfig()
    assert vote(result(0, "sensor_fault"), config) == "sensor_fault"
    assert vote(result(0, "sensor_fault:dropout"), config) == "sensor_fault"  # quality verdict
    assert vote(result(0, "outer_race", db=30.0, sensor_fault=1.0), config) == "sensor_fault"
    events = feed(Voter(config), ["sensor_fault"] * 3)
    assert kinds(events) == [("firing", "sensor_fault")] and events[0]["severity"] == "info"


def test_unknown_keeps_the_ticket_open_and_a_new_fault_replaces_it():
    voter = Voter(AlertsConfig(k=3, n=5))
    feed(voter, ["outer_race"] * 5)
    assert feed(voter, ["outer_race"] * 5, start=5, db=0.5) == []  # now unknown: stays open
    assert voter.trackers["yard1/crane1/slew"].state == "unknown"
    assert feed(voter, ["outer_race"] * 3, start=10) == []  # back: same ticket, no re-firing
    events = feed(voter, ["inner_race"] * 5, start=13)
    assert kinds(events) == [("resolved", "outer_race"), ("firing", "inner_race")]
    assert events[0]["dedup_key"] != events[1]["dedup_key"]


def test_escalation_reuses_the_key_and_never_goes_down():
    voter = Voter(AlertsConfig(k=2, n=3, escalate_envelope_db=[15.0, 25.0],
                               escalate_confidence=[0.99, 1.0]))
    events = feed(voter, ["outer_race"] * 2, db=8.0)
    events += feed(voter, ["outer_race"] * 3, start=2, db=20.0)
    events += feed(voter, ["outer_race"] * 3, start=5, db=30.0)
    events += feed(voter, ["outer_race"] * 3, start=8, db=8.0)
    assert [(e["event"], e["severity"]) for e in events] == [
        ("firing", "warning"), ("escalated", "major"), ("escalated", "critical")]
    assert len({e["dedup_key"] for e in events}) == 1
    assert events[0]["dedup_key"] == dedup_key("yard1", "crane1", "slew", "outer_race")


def test_event_carries_the_evidence():
    config = AlertsConfig(k=2, n=3, dashboard_url="http://grafana:3000/")
    event = feed(Voter(config), ["outer_race", "outer_race"], db=12.5)[0]
    evidence = event["evidence"]
    assert evidence["verdict"] == "outer_race" and evidence["envelope_db"]["bpfo"] == 12.5
    assert [v["confidence"] for v in evidence["votes"]] == [0.9, 0.9]
    assert evidence["rms"] == 0.2 and evidence["kurtosis"] == 3.1
    assert evidence["explanation"].startswith("BPFO +12 dB")  # signal.explain's technician line
    assert event["dashboard_url"] == ("http://grafana:3000/d/slewguard-bearing/slewguard-bearing"
                                      "?var-site=yard1&var-asset=crane1&var-bearing=slew")
    assert event["started_at"] == "2023-11-14T22:13:21.000000Z"  # the window that decided


def test_dashboard_link_encodes_asset_and_bearing_names():
    from dataclasses import replace
    from urllib.parse import parse_qs, urlsplit

    asset, bearing = "crane 1&var-site=evil#x", "slew/ä%20"
    voter = Voter(AlertsConfig(k=2, n=3, dashboard_url="http://grafana:3000"))
    events = [e for k in range(2) for e in voter.feed(
        replace(result(k, "outer_race", db=12.5), asset=asset, bearing=bearing))]
    link = urlsplit(events[0]["dashboard_url"])
    assert link.fragment == "" and link.path == "/d/slewguard-bearing/slewguard-bearing"
    assert parse_qs(link.query) == {"var-site": ["yard1"], "var-asset": [asset],
                                    "var-bearing": [bearing]}
    assert " " not in events[0]["dashboard_url"]


def test_seen_and_older_results_do_not_vote_again(tmp_path):
    sink = AlertSink(AlertsConfig(k=3, n=5, webhooks=[{"name": "t", "url": "http://x"}]),
                     tmp_path / "a.sqlite3")
    try:
        batch = [result(k, "outer_race") for k in range(3)]
        sink.write(batch)
        sink.write(batch)  # the forwarder retried the batch
        sink.write([result(1, "healthy"), result(2, "healthy")])  # old windows, replayed
        assert sink.queue.depth("t") == 1
        tracker = sink.voter.trackers["yard1/crane1/slew"]
        assert len(tracker.votes) == 3 and tracker.state == "outer_race"
        sink.write([result(0, "outer_race", sensor="s2")])  # another sensor, own timeline
        assert len(tracker.votes) == 4
    finally:
        sink.close()


def test_each_state_change_is_logged_once_at_info_with_its_evidence(tmp_path, caplog):
    sink = AlertSink(AlertsConfig(k=3, n=5), tmp_path / "a.sqlite3")
    caplog.set_level("INFO", logger="slewguard.service.alerts")
    try:
        sink.write([result(k, "healthy") for k in range(3)])
        batch = [result(k, "outer_race", db=18.0, env_bpfo_h2_db=14.0) for k in range(3, 6)]
        sink.write(batch)
        sink.write(batch)  # a retried batch votes (and logs) nothing again
        assert [r.getMessage()[27:45] for r in caplog.records] == ["unknown -> healthy"]
        sink.write([result(6, "outer_race", db=18.0, env_bpfo_h2_db=14.0)])  # 2 healthy of 5
        sink.write([result(7, "outer_race", db=18.0)])  # held (exit votes): no change, no line
    finally:
        sink.close()
    lines = [r.getMessage() for r in caplog.records if r.levelname == "INFO"]
    assert lines == [
        "bearing yard1/crane1/slew: unknown -> healthy (3 of the last 3 votes; sensor s1 says "
        "healthy at 0.90, 6 rpm: no defect line over 12 dB; kurtosis 3.1, crest 4.0)",
        "bearing yard1/crane1/slew: healthy -> outer_race (4 of the last 5 votes; sensor s1 "
        "says outer_race at 0.90, 6 rpm: BPFO 2 harmonics +18 dB; kurtosis 3.1, crest 4.0)"]


def test_states_survive_a_restart_without_re_firing(tmp_path):
    config = AlertsConfig(k=2, n=3, webhooks=[{"name": "t", "url": "http://x"}])
    sink = AlertSink(config, tmp_path / "a.sqlite3")
    sink.write([result(k, "cage", db=9.0) for k in range(3)])
    sink.close()
    again = AlertSink(config, tmp_path / "a.sqlite3")
    try:
        again.write([result(k, "cage", db=9.0) for k in range(5)])
        assert again.queue.depth("t") == 1  # still the one firing
        again.write([result(k, "healthy") for k in range(5, 8)])
        assert again.queue.depth("t") == 2
        assert [again.queue.head("t")[1]["event"]] == ["firing"]
    finally:
        again.close()


def test_gauges_follow_the_voted_state(tmp_path):
    registry = CollectorRegistry()
    sink = AlertSink(AlertsConfig(k=2, n=3), tmp_path / "a.sqlite3", registry)
    try:
        sink.write([result(k, "outer_race", db=11.0) for k in range(2)])
        labels = {"site": "yard1", "asset": "crane1", "bearing": "slew"}
        value = registry.get_sample_value
        assert value("slewguard_bearing_state", {**labels, "state": "outer_race"}) == 1.0
        assert value("slewguard_bearing_state", {**labels, "state": "healthy"}) == 0.0
        assert value("slewguard_bearing_state_code", labels) == STATE_CODES["outer_race"] == 4
        assert value("slewguard_bearing_envelope_db", {**labels, "line": "bpfo"}) == 11.0
        assert value("slewguard_bearing_probability", {**labels, "class": "outer_race"}) == 0.9
        assert value("slewguard_bearing_kurtosis", labels) == 3.1
        assert value("slewguard_alert_events_total", {"event": "firing"}) == 1.0
    finally:
        sink.close()
    assert AlertMetrics(registry) is sink.metrics  # a rebuilt sink reuses the registered metrics


@pytest.mark.skipif(services.PROMTOOL is None, reason="promtool not installed (apt: prometheus)")
def test_exposition_passes_promtool(tmp_path):
    metrics = Metrics()
    config = config_from_dict({"site": "yard1", "sensors": [{"sensor_id": "s1", "bearing":
                               "cwru-6205"}], "outbox": {"path": str(tmp_path / "o.sqlite3")},
                               "alerts": {"webhooks": [{"name": "t", "url": "http://x"}]}},
                              env={})
    (sink,) = alert_sink.build(SinkContext(config, metrics, mqtt.Client(
        mqtt.CallbackAPIVersion.VERSION2)))
    try:
        sink.write([result(k, "inner_race") for k in range(3)])
        assert (tmp_path / "o-alerts.sqlite3").exists()
    finally:
        sink.close()
    lint = subprocess.run([services.PROMTOOL, "check", "metrics"],
                          input=generate_latest(metrics.registry), capture_output=True)
    assert lint.returncode == 0, lint.stdout + lint.stderr


@pytest.mark.parametrize("alerts, message", [
    ({"k": 6, "n": 5}, "k=6 must not exceed n=5"),
    ({"exit_k": {"healthy": 4}}, "exit_k.healthy=4 must not exceed enter_k=3"),
    ({"enter_k": {"broken": 2}}, "enter_k.broken: unknown state"),
    ({"webhooks": [{"name": "t", "url": "ftp://x"}]}, "must start with http"),
    ({"webhooks": [{"name": "t", "url": "http://x", "format": "template"}]},
     "needs exactly one of template or template_file"),
])
def test_bad_alert_config_names_the_key(alerts, message):
    with pytest.raises(ConfigError) as err:
        config_from_dict({"site": "y", "sensors": [{"sensor_id": "s", "bearing": "cwru-6205"}],
                          "alerts": alerts}, env={})
    assert message in str(err.value) and "alerts" in str(err.value)


def test_a_second_sink_on_the_same_queue_is_refused(tmp_path):
    sink = AlertSink(AlertsConfig(), tmp_path / "a.sqlite3")
    try:
        with pytest.raises(ValueError, match="already used by an open AlertSink"):
            AlertSink(AlertsConfig(), tmp_path / "a.sqlite3")
    finally:
        sink.close()
    AlertSink(AlertsConfig(), tmp_path / "a.sqlite3").close()  # closed: reusable (SIGHUP)


def test_persistence_escalates_one_level():
    voter = Voter(AlertsConfig(k=2, n=3, escalate_envelope_db=[50.0, 60.0],
                               escalate_confidence=[1.0, 1.0], escalate_after_windows=5))
    events = feed(voter, ["cage"] * 8, db=6.0)
    assert [(e["event"], e["severity"]) for e in events] == [("firing", "warning"),
                                                             ("escalated", "major")]
    assert events[1]["at"] == "2023-11-14T22:13:25.000000Z"  # the 5th window in the state
