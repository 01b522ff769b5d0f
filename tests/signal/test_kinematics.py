import pytest

from slewguard.signal.kinematics import BearingGeometry, preset, presets

# CWRU's published defect frequencies for the SKF 6205-2RS JEM, multiples of shaft speed.
CWRU_ORDERS = {"bpfi_hz": 5.4152, "bpfo_hz": 3.5848, "ftf_hz": 0.39828, "bsf2_hz": 4.7135}


@pytest.mark.parametrize("line,published", sorted(CWRU_ORDERS.items()))
def test_cwru_orders_match_published_within_0p1_percent(line, published):
    got = preset("cwru-6205").orders().as_dict()[line]
    assert got == pytest.approx(published, rel=1e-3)


def test_frequencies_scale_with_rpm():
    g = preset("cwru-6205")
    f = g.frequencies(rpm=1797)
    assert f.shaft_hz == pytest.approx(29.95)
    assert f.bpfo_hz == pytest.approx(3.5848 * 29.95, rel=1e-3)
    assert g.frequencies(rpm=-1797) == f  # reversal changes no frequency


def test_slewing_example_from_paper():
    # Pd 1 m, Bd 40 mm, N 75, alpha 45 deg at 1 rpm: BPFO ~0.61, BPFI ~0.64, BSF ~0.21, FTF ~0.008
    f = preset("slew-4pc-1000").frequencies(rpm=1)
    assert f.bpfo_hz == pytest.approx(0.61, abs=0.01)
    assert f.bpfi_hz == pytest.approx(0.64, abs=0.01)
    assert f.bsf_hz == pytest.approx(0.21, abs=0.01)
    assert f.ftf_hz == pytest.approx(0.008, abs=0.001)


def test_presets_include_two_slewing_kinds():
    kinds = {g.kind for g in presets().values()}
    assert {"four-point-contact ball", "crossed roller"} <= kinds


def test_harmonics():
    f = preset("cwru-6205").orders()
    assert f.harmonics("bpfo_hz", 3) == pytest.approx([3.5848, 7.1696, 10.7543], rel=1e-3)


@pytest.mark.parametrize(
    "kwargs,word",
    [
        ({"pitch_diameter_mm": 0}, "pitch_diameter_mm"),
        ({"element_diameter_mm": 50}, "element_diameter_mm"),
        ({"n_elements": 2}, "n_elements"),
        ({"n_elements": 500}, "do not fit"),
        ({"contact_angle_deg": 95}, "contact_angle_deg"),
    ],
)
def test_impossible_geometry_names_the_parameter(kwargs, word):
    base = dict(name="x", pitch_diameter_mm=40, element_diameter_mm=8, n_elements=9)
    with pytest.raises(ValueError, match=word):
        BearingGeometry(**{**base, **kwargs})


def test_unknown_preset_lists_known_ones():
    with pytest.raises(ValueError, match="cwru-6205"):
        preset("skf-nope")


def test_bad_rpm():
    with pytest.raises(ValueError, match="rpm"):
        preset("cwru-6205").frequencies(rpm=0)
