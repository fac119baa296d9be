"""Photometry of a flat-fielded frame: the detector saturates, and counts photons, before the
flat. Raw frames calibrated by the real Calibrator with a master dark and a master flat."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pytest

from mascara_actors.calibration import Calibrator, MasterFrame
from mascara_actors.photometry import measure
from mascara_actors.photometry.flags import PFlag
from mascara_actors.rawframe import RawFrame, RawHeader

GAIN, BIAS, SATURATION = 0.62, 1000.0, 63000.0


def _header(ny: int, nx: int) -> RawHeader:
    return RawHeader(lstseq=1000, lstidx=1000, lst=1.0, jd=2461120.5, jdmid=2461120.50004,
                     utc=datetime(2026, 3, 20, tzinfo=UTC), exptime=6.38, ccdtemp=10.0,
                     site="LaPalma", camera="C", imagetyp="science", x0=0, xsize=nx, y0=0,
                     ysize=ny)


def _calibrator(ny: int, nx: int, flat: float | None) -> Calibrator:
    common = {"camera": "C", "site": "LaPalma", "nobs": 20, "exptime": 6.38, "ccdtemp": 10.0,
              "lstseq": 1, "x0": 0, "xsize": nx, "y0": 0, "ysize": ny}
    dark = MasterFrame(np.full((ny, nx), BIAS, np.float32), "dark", **common)
    master = None if flat is None else MasterFrame(np.full((ny, nx), flat, np.float32), "flat",
                                                   **common)
    return Calibrator(dark=dark, flat=master)


def _star_peak(flux_adu: float, flat: float | None) -> tuple[float, int]:
    """Calibrated peak and pflag of one star of ``flux_adu`` whose raw pixels the ADC clips
    at 65535, measured on the frame calibrated with a uniform ``flat``."""
    ny = nx = 100
    yy, xx = np.mgrid[:ny, :nx]
    light = flux_adu / (2 * np.pi) * np.exp(-((xx - 50.2) ** 2 + (yy - 49.8) ** 2) / 2)
    raw = np.clip(BIAS + 1500 + light * (flat or 1.0), 0, 65535).astype(np.uint16)
    calibrator = _calibrator(ny, nx, flat)
    image = calibrator.calibrate(RawFrame(raw, _header(ny, nx))).image
    r = measure(image, [50.2], [49.8], saturation=SATURATION, gain=GAIN,
                flat=calibrator.flat_science)
    return float(r.peak[0]), int(r.pflag[0])


@pytest.mark.parametrize("flat", [None, 0.9, 1.0, 1.05, 1.17])
def test_a_star_clipped_by_the_adc_is_saturated_whatever_the_flat(flat: float | None) -> None:
    peak, pflag = _star_peak(2.0e6, flat)
    assert pflag & PFlag.SATURATED, (flat, peak)


@pytest.mark.parametrize(("flat", "flux_adu"), [(0.9, 4.3e5), (0.95, 4.1e5)])
def test_a_star_below_saturation_is_not_flagged_where_the_flat_is_low(flat: float,
                                                                     flux_adu: float) -> None:
    peak, pflag = _star_peak(flux_adu, flat)
    # under the saturation level on the detector, over it once divided by the flat
    assert peak * flat < SATURATION <= peak, peak
    assert not pflag & PFlag.SATURATED, (flat, peak)


@pytest.mark.parametrize("flat", [0.77, 1.0, 1.25])
def test_the_flux_error_matches_the_scatter_on_a_flat_fielded_frame(flat: float) -> None:
    """600 photon-limited stars: the scatter of their fluxes over the error the photometry
    gives them is 1 (within 8 %, against the 3 % a standard deviation of 600 has). Taking
    the photon noise of the flat-fielded flux as such gives 1 / sqrt(flat)."""
    rng = np.random.default_rng(1)
    nstar, sep = 600, 50
    ny, nx = 50, nstar * sep
    yy, xx = np.mgrid[:ny, :nx]
    xs, ys = np.arange(nstar) * sep + 25.3, np.full(nstar, 24.8)
    electrons = np.full((ny, nx), 200.0)
    for x in xs:
        cols = slice(int(x) - 10, int(x) + 11)
        electrons[:, cols] += 2.0e5 / (2 * np.pi * 1.3**2) * np.exp(
            -((xx[:, cols] - x) ** 2 + (yy[:, cols] - 24.8) ** 2) / (2 * 1.3**2))
    # the detector sees the light times the pixel's response, the flat
    raw = np.clip(BIAS + rng.poisson(electrons * flat) / GAIN, 0, 65535).astype(np.uint16)
    calibrator = _calibrator(ny, nx, flat)
    image = calibrator.calibrate(RawFrame(raw, _header(ny, nx))).image
    r = measure(image, xs, ys, apertures=(2.5, 4.5), gain=GAIN, flat=calibrator.flat_science)
    ratio = np.std(r.flux[:, 1]) / np.median(r.eflux[:, 1])
    assert abs(ratio - 1.0) < 0.08, ratio


def test_a_flat_of_another_shape_is_refused() -> None:
    with pytest.raises(Exception, match=r"the flat is \(4, 4\), the image \(50, 50\)"):
        measure(np.zeros((50, 50), np.float32), [25.0], [25.0], flat=np.ones((4, 4)))
