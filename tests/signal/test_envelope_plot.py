import pytest

from slewguard.signal import envelope_plot
from slewguard.signal.rule import LINE_DB
from slewguard.signal.scenario import SimulationSpec
from slewguard.signal.simulate import simulate

FS = 5000.0


def window(fault, snr_db=10.0, seed=0):
    spec = SimulationSpec(fault=fault, bearing="slew-4pc-1000", rpm=6.0, sample_rate_hz=FS,
                          snr_db=snr_db, window_seconds=20.0)
    return simulate(spec, n_windows=1, seed=seed).windows[0]


@pytest.fixture(scope="module")
def panels():
    return [envelope_plot.measure(window(f), FS, "slew-4pc-1000", 6.0, f, snr_db=10.0)
            for f in ("healthy", "outer_race")]


def test_the_figure_speaks_words_and_shares_one_scale(panels, tmp_path):
    path = tmp_path / "spectra.png"
    fig = envelope_plot.plot(panels, path, "two windows")
    assert path.is_file() and path.stat().st_size > 20_000
    axes = [ax for ax in fig.axes if ax.get_title(loc="left")]
    titles = [ax.get_title(loc="left") for ax in axes]
    assert titles == ["Healthy — bearing slew-4pc-1000, 6.0 rpm, SNR 10 dB",
                      "Outer-race fault — bearing slew-4pc-1000, 6.0 rpm, SNR 10 dB"]
    assert not any("_" in ax.get_title(loc="right") for ax in axes)  # no token strings
    assert axes[0].get_ylim() == axes[1].get_ylim()
    assert all(ax.child_axes for ax in axes)  # the Hz axis on top of each panel
    for ax in axes:  # every panel names every line
        texts = " ".join(t.get_text() for t in ax.texts)
        assert all(label in texts for label, _ in envelope_plot.LINE_STYLES.values())
        assert f"alarm threshold {LINE_DB:g} dB" in texts


def test_healthy_reads_below_threshold_and_a_fault_over_it(panels):
    healthy, outer = panels
    assert healthy.verdict == "healthy" and envelope_plot.findings(healthy) == []
    assert "below the 12 dB threshold" in envelope_plot.reading(healthy)[0]
    assert outer.verdict == "outer_race" and outer.evidence["bpfo_h1_db"] >= LINE_DB
    assert envelope_plot.reading(outer)[0].startswith("envelope rule: outer race")
    # the curve's peak at BPFO is the height the daemon measures there (same floor)
    near = abs(outer.orders - 36.44) < 0.02 * 36.44
    assert abs(outer.level_db[near].max() - outer.evidence["bpfo_h1_db"]) < 1.5


def test_plot_refuses_no_panels(tmp_path):
    with pytest.raises(ValueError, match="no panels"):
        envelope_plot.plot([], tmp_path / "x.png")
