"""The envelope rule decides from lines and level, and says why."""

from slewguard.signal.rule import envelope_rule


def test_rule_verdicts_and_reasons():
    assert envelope_rule({"bpfo_h1_db": 14.0, "bpfi_h1_db": 16.0, "rms_rel_db": 9.0}) == (
        "inner_race", "BPFI line 16.0 dB over its floor")
    verdict, reason = envelope_rule({"bpfo_h1_db": 5.0, "bpfi_h1_db": 6.0, "rms_rel_db": 4.0})
    assert verdict == "rolling_element" and "+4.0 dB" in reason
    assert envelope_rule({"bpfo_h1_db": 11.9, "bpfi_h1_db": 2.0, "rms_rel_db": 2.4})[0] == (
        "healthy")
    assert envelope_rule({"bpfo_h1_db": 11.9, "bpfi_h1_db": 2.0}, line_db=11.0)[0] == (
        "outer_race")
