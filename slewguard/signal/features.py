"""Features of vibration windows: time statistics, band energies and envelope-spectrum evidence.

The envelope chain follows Randall & Antoni (2011): pre-whiten the spectrum, pick the demodulation
band by spectral kurtosis (a fast-kurtogram equivalent: a tree of equal-width FFT bands, plain and
half-shifted, scored by the kurtosis of their complex envelope), square the envelope of that band
and take its spectrum. Defect evidence is the envelope amplitude at each kinematic line (ftf, bpfo,
bpfi, bsf2; harmonics 1..3), searched within +-LINE_TOLERANCE (slip) and expressed in dB above the
local noise floor (the median of a neighbourhood that excludes the search window). Lines are placed
in orders (multiples of shaft speed): with a constant ``rpm`` at order x fr, with an ``rpm_trace``
the squared envelope is resampled to uniform shaft angle (computed order tracking) first.

Conventions: ``kurtosis`` is excess kurtosis (0 for Gaussian noise); band energies are 4 equal
bands from 0 to Nyquist in dB relative to the total; ``sk_centre_rel`` / ``sk_bandwidth_rel`` are
fractions of Nyquist; a line whose frequency spans fewer than MIN_PERIODS periods in the window
cannot be resolved and reads 0 dB (this is the cage line of slewing bearings in short windows).

Example:
    >>> import numpy as np
    >>> from slewguard.signal.kinematics import preset
    >>> x = np.random.default_rng(0).normal(size=(2, 12000))
    >>> t = extract(x, 12000.0, preset("cwru-6205"), rpm=1797.0)
    >>> t.values.shape == (2, len(FEATURE_NAMES))
    True
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from slewguard.signal.kinematics import BearingGeometry

LINES = ("ftf", "bpfo", "bpfi", "bsf2")
HARMONICS = 3
LINE_TOLERANCE = 0.02  # +-2 % around each line: slip, and BPFO/BPFI of slewing rings are 6 % apart
MIN_PERIODS = 3.0  # a line needs this many periods inside the window to be resolved
ENVELOPE_PAD = 4  # zero-padding factor of the envelope FFT (finer line placement)
FLOOR_SPAN = 0.2  # noise-floor neighbourhood: +-20 % of the line frequency ...
FLOOR_MIN_BINS = 15  # ... and at least this many bins on each side
N_ENERGY_BANDS = 4
# Candidate band counts of the kurtogram (band width = Nyquist / n); n > 1 also half-shifted.
KURTOGRAM_SPLITS = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64)

TIME_NAMES = (
    "rms",
    "peak",
    "crest_factor",
    "kurtosis",
    "skewness",
    "shape_factor",
    "impulse_factor",
)
BAND_NAMES = tuple(f"band{i + 1}_db" for i in range(N_ENERGY_BANDS))
SK_NAMES = ("sk_max", "sk_centre_rel", "sk_bandwidth_rel")
ENVELOPE_NAMES = tuple(f"env_{line}_h{k}_db" for line in LINES for k in range(1, HARMONICS + 1)) + (
    "env_bpfi_sideband_db",
    "env_shaft_db",
)
FEATURE_NAMES: tuple[str, ...] = TIME_NAMES + BAND_NAMES + SK_NAMES + ENVELOPE_NAMES + ("rpm",)


@dataclass
class FeatureTable:
    """Features of a batch of windows: ``values[i, j]`` is feature ``names[j]`` of window i.

    Example:
        >>> t = FeatureTable(("rms",), np.ones((2, 1), np.float32))
        >>> t.row(1), len(t)
        ({'rms': 1.0}, 2)
    """

    names: tuple[str, ...]
    values: np.ndarray  # (B, F) float32

    def row(self, i: int) -> dict[str, float]:
        """Window ``i`` as a name -> value mapping in FEATURE_NAMES order."""
        return {n: float(v) for n, v in zip(self.names, self.values[i], strict=True)}

    def __len__(self) -> int:
        return int(self.values.shape[0])


def _as_batch(windows: np.ndarray) -> np.ndarray:
    x = np.asarray(windows, dtype=np.float64)
    if x.ndim == 1:
        x = x[None, :]
    if x.ndim != 2 or x.size == 0:
        raise ValueError(
            f"windows has shape {np.shape(windows)}: pass one window (N,) or a batch (B, N) "
            "with N > 0 samples"
        )
    if x.shape[1] < 64:
        raise ValueError(f"windows has {x.shape[1]} samples per window: pass at least 64")
    bad = ~np.isfinite(x)
    if bad.any():
        rows = sorted(set(np.nonzero(bad)[0].tolist()))[:5]
        raise ValueError(
            f"windows contain {int(bad.sum())} NaN/inf samples (windows {rows}...): drop or "
            "interpolate the gaps before feature extraction"
        )
    return x


def _check_rate(sample_rate_hz: float) -> float:
    fs = float(sample_rate_hz)
    if not np.isfinite(fs) or fs <= 0:
        raise ValueError(f"sample_rate_hz={sample_rate_hz} must be a positive number of Hz")
    return fs


def _whiten(spectrum: np.ndarray) -> np.ndarray:
    """Spectral pre-whitening: divide by a moving RMS of the magnitude. (B, M) -> (B, M)."""
    power = np.abs(spectrum) ** 2
    width = max(8, spectrum.shape[1] // 200)
    csum = np.cumsum(np.pad(power, ((0, 0), (width // 2 + 1, width - width // 2))), axis=1)
    smooth = (csum[:, width:] - csum[:, :-width])[:, : spectrum.shape[1]] / width
    return spectrum / np.sqrt(smooth + 1e-30 * power.mean(axis=1, keepdims=True) + 1e-300)


def _time_features(x: np.ndarray) -> np.ndarray:
    """Time statistics per window. (B, N) -> (B, len(TIME_NAMES))."""
    xc = x - x.mean(axis=1, keepdims=True)
    tiny = 1e-30
    rms = np.sqrt((xc**2).mean(axis=1))
    peak = np.abs(xc).max(axis=1)
    mean_abs = np.abs(xc).mean(axis=1)
    z = xc / (rms[:, None] + tiny)
    kurt = (z**4).mean(axis=1) - 3.0
    skew = (z**3).mean(axis=1)
    crest = peak / (rms + tiny)
    return np.stack(
        [rms, peak, crest, kurt, skew, rms / (mean_abs + tiny), peak / (mean_abs + tiny)], axis=1
    )


def _band_energies(spectrum: np.ndarray) -> np.ndarray:
    """Energy of N_ENERGY_BANDS equal bands relative to the total, dB. (B, M) -> (B, 4)."""
    power = np.abs(spectrum[:, 1:]) ** 2
    edges = np.linspace(0, power.shape[1], N_ENERGY_BANDS + 1).astype(int)
    bands = np.stack(
        [power[:, a:b].sum(axis=1) for a, b in zip(edges[:-1], edges[1:], strict=True)], axis=1
    )
    return 10 * np.log10(bands / (power.sum(axis=1, keepdims=True) + 1e-300) + 1e-12)


def select_band(
    spectrum: np.ndarray, n_samples: int, sample_rate_hz: float, min_bandwidth_hz: float = 0.0
) -> tuple[np.ndarray, np.ndarray]:
    """Pick each window's demodulation band by spectral kurtosis (fast-kurtogram equivalent).

    ``spectrum`` is ``rfft`` of the windows (B, M). Each candidate band's complex envelope is the
    inverse FFT of its bins; its kurtosis E|c|^4 / (E|c|^2)^2 - 2 is 0 for noise, -1 for a tone.
    Returns bin ranges (B, 2) [first, stop) and the winning kurtosis (B,).

    Example:
        >>> x = np.random.default_rng(0).normal(size=(1, 4096))
        >>> bins, sk = select_band(np.fft.rfft(x), 4096, 1000.0)
        >>> bins.shape, bool(abs(sk[0]) < 0.5)
        ((1, 2), True)
    """
    n_bins = spectrum.shape[1] - 1  # bin 0 (DC) never joins a band
    bin_hz = sample_rate_hz / n_samples
    best_sk = np.full(spectrum.shape[0], -np.inf)
    best_bins = np.zeros((spectrum.shape[0], 2), dtype=int)
    for n_split in KURTOGRAM_SPLITS:
        width = n_bins // n_split
        if width < 32 or (n_split > 1 and width * bin_hz < min_bandwidth_hz):
            continue
        for offset in (0, width // 2) if n_split > 1 else (0,):
            count = n_split - (1 if offset else 0)
            first = 1 + offset
            seg = spectrum[:, first : first + count * width].reshape(-1, count, width)
            env = np.abs(np.fft.ifft(seg, axis=-1)) ** 2  # (B, count, width)
            sk = (env**2).mean(axis=-1) / (env.mean(axis=-1) ** 2 + 1e-300) - 2.0
            arg = sk.argmax(axis=1)
            top = sk[np.arange(len(arg)), arg]
            better = top > best_sk
            best_sk[better] = top[better]
            best_bins[better, 0] = first + arg[better] * width
            best_bins[better, 1] = first + (arg[better] + 1) * width
    return best_bins, best_sk


def _squared_envelopes(spectrum: np.ndarray, bins: np.ndarray) -> list[np.ndarray]:
    """Squared envelope of each window's band, mean removed, at 2 x band width (no aliasing)."""
    out = []
    for row, (first, stop) in zip(spectrum, bins, strict=True):
        width = int(stop - first)
        env = np.abs(np.fft.ifft(row[first:stop], n=2 * width)) ** 2
        out.append(env - env.mean())
    return out


def _amplitude_spectra(signals: list[np.ndarray], n_ffts: list[int], n_keep: int) -> np.ndarray:
    """Hann-windowed amplitude spectra, one FFT length per signal, first n_keep bins. -> (B, K)."""
    amp = np.zeros((len(signals), n_keep))
    for i, (sig, n_fft) in enumerate(zip(signals, n_ffts, strict=True)):
        window = np.hanning(len(sig))
        line = np.abs(np.fft.rfft(sig * window, n=n_fft)[:n_keep]) * 2 / window.sum()
        amp[i, : len(line)] = line
    return amp


def envelope_spectrum(
    windows: np.ndarray,
    sample_rate_hz: float,
    band_hz: tuple[float, float] | None = None,
    *,
    max_freq_hz: float | None = None,
    min_bandwidth_hz: float = 0.0,
    whiten: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """Squared-envelope spectrum of each window: (freqs_hz (F,), amplitude (B, F)).

    ``band_hz=None`` picks each window's band by spectral kurtosis among bands at least
    ``min_bandwidth_hz`` wide; ``max_freq_hz`` (default: the narrowest chosen band) cuts the axis.
    The axis is common to the batch, with ENVELOPE_PAD bins per 1 / window duration.

    Example:
        >>> x = np.random.default_rng(0).normal(size=(3, 5000))
        >>> f, a = envelope_spectrum(x, 5000.0, band_hz=(500.0, 1500.0), max_freq_hz=100.0)
        >>> a.shape[0], bool(f[-1] <= 100.0)
        (3, True)
    """
    x = _as_batch(windows)
    fs = _check_rate(sample_rate_hz)
    spectrum, bins, _ = _banded(x, fs, band_hz, min_bandwidth_hz, whiten)
    duration_s = x.shape[1] / fs
    envelopes = _squared_envelopes(spectrum, bins)
    narrowest_hz = (bins[:, 1] - bins[:, 0]).min() / duration_s
    top_hz = narrowest_hz if max_freq_hz is None else min(max_freq_hz, narrowest_hz)
    n_keep = int(top_hz * ENVELOPE_PAD * duration_s) + 1
    freqs = np.arange(n_keep) / (ENVELOPE_PAD * duration_s)
    # Every envelope spans the window's duration: FFT length ENVELOPE_PAD * len(e) gives every
    # window the same bin spacing, 1 / (ENVELOPE_PAD * duration).
    amp = _amplitude_spectra(envelopes, [ENVELOPE_PAD * len(e) for e in envelopes], n_keep)
    return freqs, amp


def _banded(
    x: np.ndarray, fs: float, band_hz: tuple[float, float] | None, min_bw: float, whiten: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """rfft (whitened if asked), band bins (B, 2) and spectral kurtosis (B,) of the windows."""
    n = x.shape[1]
    spectrum = np.fft.rfft(x - x.mean(axis=1, keepdims=True), axis=1)
    if whiten:
        spectrum = _whiten(spectrum)
    if band_hz is None:
        bins, sk = select_band(spectrum, n, fs, min_bw)
        return spectrum, bins, sk
    lo, hi = (float(v) for v in band_hz)
    if not 0 <= lo < hi <= fs / 2:
        raise ValueError(
            f"band_hz={band_hz} must satisfy 0 <= low < high <= Nyquist ({fs / 2:g} Hz)"
        )
    first, stop = max(1, int(round(lo * n / fs))), int(round(hi * n / fs))
    if stop - first < 8:
        raise ValueError(
            f"band_hz={band_hz} spans under 8 FFT bins: widen it or use longer windows"
        )
    bins = np.tile([first, stop], (x.shape[0], 1))
    seg = np.abs(np.fft.ifft(spectrum[:, first:stop], axis=1)) ** 2
    sk = (seg**2).mean(axis=1) / (seg.mean(axis=1) ** 2 + 1e-300) - 2.0
    return spectrum, bins, sk


def _speeds(
    rpm: float | np.ndarray | None, rpm_trace: np.ndarray | None, shape: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray | None]:
    """Mean |rpm| per window (B,) and the validated |rpm| trace (B, N) or None."""
    if rpm is None and rpm_trace is None:
        raise ValueError(
            "rpm=None: pass the shaft speed (rpm=, a number or one per window) or an rpm_trace; "
            "defect lines sit at fixed multiples of shaft speed and cannot be placed without it"
        )
    trace = None
    if rpm_trace is not None:
        trace = np.abs(np.asarray(rpm_trace, dtype=np.float64))
        trace = trace[None, :] if trace.ndim == 1 else trace
        if trace.shape != shape or not np.isfinite(trace).all():
            raise ValueError(
                f"rpm_trace has shape {np.shape(rpm_trace)} (finite: {np.isfinite(trace).all()}):"
                f" pass one finite speed sample per vibration sample, shape {shape}"
            )
    if rpm is None:
        speeds = trace.mean(axis=1)
    else:
        speeds = np.abs(np.broadcast_to(np.asarray(rpm, dtype=np.float64), (shape[0],)))
    if not (np.isfinite(speeds).all() and (speeds > 0).all()):
        raise ValueError(
            f"rpm={rpm if rpm is not None else 'mean of rpm_trace'} gives speeds "
            f"{speeds[:4].tolist()}...: every window needs a finite, non-zero shaft speed in rpm"
        )
    return speeds.astype(np.float64), trace


def _check_resolvable(
    revs: np.ndarray, speeds: np.ndarray, orders: dict[str, float], fs: float, n: int
) -> None:
    """Raise when a window is too short for the slowest impact line or fs too low for the top."""
    slowest = min(orders["bpfo"], orders["bpfi"], orders["bsf2"])
    worst = int(np.argmin(revs))
    if revs[worst] * slowest < MIN_PERIODS:
        need_s = MIN_PERIODS / (slowest * speeds[worst] / 60.0)
        raise ValueError(
            f"window of {n / fs:g} s holds {revs[worst] * slowest:.2f} periods of the slowest "
            f"defect line at {speeds[worst]:g} rpm (window {worst}): pass windows of at least "
            f"{need_s:.1f} s ({MIN_PERIODS:g} periods) at this speed"
        )
    top_hz = HARMONICS * max(orders.values()) * speeds.max() / 60.0
    if fs / 2 < 3 * top_hz:
        raise ValueError(
            f"sample_rate_hz={fs:g}: Nyquist {fs / 2:g} Hz is below 3 x the highest defect "
            f"harmonic ({top_hz:.1f} Hz at {speeds.max():g} rpm): sample at >= {6 * top_hz:.0f} Hz"
        )


def _line_level_db(
    axis: np.ndarray, amp: np.ndarray, target: np.ndarray, resolvable: np.ndarray
) -> np.ndarray:
    """Peak within +-LINE_TOLERANCE of target over the local median floor, dB >= 0. -> (B,)."""
    step = axis[1] - axis[0]
    cell = ENVELOPE_PAD * step  # one true resolution cell (1 / duration)
    half_win = np.maximum(LINE_TOLERANCE * target, step)[:, None]
    dist = np.abs(axis[None, :] - target[:, None])  # (B, K)
    peak = np.where(dist <= half_win, amp, 0.0).max(axis=1)
    reach = np.maximum(FLOOR_SPAN * target, FLOOR_MIN_BINS * cell)[:, None]
    in_floor = (dist <= reach) & (dist > 2 * half_win + 2 * cell) & (axis[None, :] > 2 * cell)
    with np.errstate(all="ignore"):
        floor = np.nanmedian(np.where(in_floor, amp, np.nan), axis=1)
        db = 20 * np.log10(peak / floor)
    ok = resolvable & np.isfinite(db)
    return np.where(ok, np.maximum(db, 0.0), 0.0)


def _order_spectra(
    envelopes: list[np.ndarray], trace: np.ndarray, fs: float, max_order: float
) -> tuple[np.ndarray, np.ndarray]:
    """Computed order tracking: squared envelopes resampled to uniform shaft angle, spectra.

    Returns (orders (K,), amplitude (B, K)) on one order axis for the batch.
    """
    n = trace.shape[1]
    revs_full = np.cumsum(trace, axis=1) / 60.0 / fs  # (B, N) revolutions turned
    t_full = np.arange(1, n + 1) / fs
    total = revs_full[:, -1]
    longest = max(len(e) for e in envelopes)
    # About as many angle samples as time samples, at most 4 x the longest envelope.
    dense = min(
        max(len(e) / r for e, r in zip(envelopes, total, strict=True)), 4 * longest / total.max()
    )
    per_rev = max(8 * max_order, dense)
    resampled = []
    for env, revs in zip(envelopes, revs_full, strict=True):
        t_env = np.arange(len(env)) * (n / fs) / len(env)
        angle = np.interp(t_env, t_full, revs)
        grid = np.arange(0.0, angle[-1], 1.0 / per_rev)
        even = np.interp(grid, angle, env)
        resampled.append(even - even.mean())
    n_fft = ENVELOPE_PAD * max(len(r) for r in resampled)
    n_keep = int(max_order * n_fft / per_rev) + 1
    orders = np.arange(n_keep) * per_rev / n_fft
    return orders, _amplitude_spectra(resampled, [n_fft] * len(resampled), n_keep)


def _envelope_features(
    envelopes: list[np.ndarray],
    speeds: np.ndarray,
    trace: np.ndarray | None,
    orders: dict[str, float],
    fs: float,
    n: int,
) -> np.ndarray:
    """Envelope line levels in dB over the floor, ENVELOPE_NAMES order. -> (B, 14)."""
    duration_s = n / fs
    max_order = (1 + FLOOR_SPAN) * HARMONICS * max(orders.values()) + FLOOR_MIN_BINS / 2
    if trace is None:
        n_keep = int(max_order * speeds.max() / 60.0 * ENVELOPE_PAD * duration_s) + 1
        axis = np.arange(n_keep) / (ENVELOPE_PAD * duration_s)
        amp = _amplitude_spectra(envelopes, [ENVELOPE_PAD * len(e) for e in envelopes], n_keep)
        scale, revs = speeds / 60.0, speeds / 60.0 * duration_s
    else:
        axis, amp = _order_spectra(envelopes, trace, fs, max_order)
        scale, revs = np.ones_like(speeds), trace.sum(axis=1) / 60.0 / fs
    columns = []
    for line in LINES:
        for k in range(1, HARMONICS + 1):
            order = k * orders[line]
            columns.append(_line_level_db(axis, amp, order * scale, order * revs >= MIN_PERIODS))
    sides = [
        _line_level_db(axis, amp, o * scale, o * revs >= MIN_PERIODS)
        for o in (orders["bpfi"] - 1.0, orders["bpfi"] + 1.0)
    ]
    columns.append(0.5 * (sides[0] + sides[1]))
    columns.append(_line_level_db(axis, amp, scale, revs >= MIN_PERIODS))
    return np.stack(columns, axis=1)


def extract(
    windows: np.ndarray,
    sample_rate_hz: float,
    bearing: BearingGeometry,
    rpm: float | np.ndarray | None = None,
    rpm_trace: np.ndarray | None = None,
) -> FeatureTable:
    """Features of a batch of windows (B, N) or one window (N,), FEATURE_NAMES order.

    ``rpm`` is the shaft speed (a number or one per window); ``rpm_trace`` (B, N), a speed sample
    per vibration sample, switches on computed order tracking for varying speed or reversal.

    Example:
        >>> from slewguard.signal.kinematics import preset
        >>> x = np.random.default_rng(1).normal(size=(5000 * 20,))
        >>> row = extract(x, 5000.0, preset("slew-4pc-1000"), rpm=6.0).row(0)
        >>> row["rpm"], row["env_bpfo_h1_db"] < 12
        (6.0, True)
    """
    x = _as_batch(windows)
    fs = _check_rate(sample_rate_hz)
    n = x.shape[1]
    speeds, trace = _speeds(rpm, rpm_trace, x.shape)
    o = bearing.orders()
    orders = {"ftf": o.ftf_hz, "bpfo": o.bpfo_hz, "bpfi": o.bpfi_hz, "bsf2": o.bsf2_hz}
    revs = speeds / 60.0 * n / fs if trace is None else trace.sum(axis=1) / 60.0 / fs
    _check_resolvable(revs, speeds if trace is None else trace.max(axis=1), orders, fs, n)
    raw = np.fft.rfft(x - x.mean(axis=1, keepdims=True), axis=1)
    white = _whiten(raw)
    top_hz = (1 + FLOOR_SPAN) * HARMONICS * max(orders.values()) * speeds.max() / 60.0
    bins, sk = select_band(white, n, fs, min_bandwidth_hz=1.5 * top_hz)
    envelopes = _squared_envelopes(white, bins)
    nyquist_bins = raw.shape[1] - 1
    sk_cols = np.stack(
        [sk, bins.mean(axis=1) / nyquist_bins, np.diff(bins, axis=1)[:, 0] / nyquist_bins], axis=1
    )
    values = np.concatenate(
        [
            _time_features(x),
            _band_energies(raw),
            sk_cols,
            _envelope_features(envelopes, speeds, trace, orders, fs, n),
            speeds[:, None],
        ],
        axis=1,
    )
    return FeatureTable(FEATURE_NAMES, values.astype(np.float32))
