"""Figures of the live calibration in the night summary (when the night had a calibration).

- :func:`noise_diagram`: RMS of each star's calibrated 50-exposure bins against V, with the
  noise floor its errors predict (photon, sky and read noise, and scintillation): the classic
  figure of merit of a photometric night.
- :func:`clouds_figure`: the night's cloud map (median per sky patch, on the sky) and the
  clouds solved per patch and exposure, against UTC.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from matplotlib.figure import Figure

from mascara_actors.decorrelation.sky import patch_centres
from mascara_actors.figures import png_bytes
from mascara_actors.storage.live_sets import LiveNight
from mascara_actors.summary.plots import slot_utc, utc_axis

__all__ = ["NoiseByStar", "clouds_figure", "noise_by_star", "noise_diagram"]

_DPI = 80
MIN_BINS = 4
"""Clean bins a star needs to enter the noise diagram."""


@dataclass(frozen=True)
class NoiseByStar:
    """One entry per star with at least :data:`MIN_BINS` clean bins (``cflag == 0``)."""

    ids: np.ndarray
    vmag: np.ndarray
    rms: np.ndarray
    """Scatter of its bins, mag."""
    floor: np.ndarray
    """What its photometric errors predict, mag."""
    nbins: np.ndarray


def noise_by_star(bins: np.ndarray) -> NoiseByStar:
    """The scatter of each star's clean bins and its noise floor (see :class:`NoiseByStar`)."""
    clean = bins[bins["cflag"] == 0]
    ids, star, counts = np.unique(clean["id"], return_inverse=True, return_counts=True)
    mag = clean["mag"].astype(float)
    mean = np.bincount(star, mag) / counts
    with np.errstate(invalid="ignore", divide="ignore"):
        var = np.bincount(star, (mag - mean[star]) ** 2) / (counts - 1)
        floor = np.sqrt(np.bincount(star, clean["efloor"].astype(float) ** 2) / counts)
    vmag = np.bincount(star, clean["vmag"].astype(float)) / counts
    ok = counts >= MIN_BINS
    return NoiseByStar(ids[ok], vmag[ok], np.sqrt(var[ok]), floor[ok], counts[ok])


def noise_diagram(night: LiveNight, tag: str) -> bytes:
    """RMS of the calibrated 50-exposure bins against V, with the median noise floor in
    0.25 mag steps of V (a note instead while no star has :data:`MIN_BINS` clean bins)."""
    noise = noise_by_star(night.bins)
    fig = Figure(figsize=(8, 5), dpi=_DPI)
    ax = fig.add_subplot()
    ax.set_title(f"Noise diagram {tag}: {len(night.sets)} sets calibrated live")
    if len(noise.ids) == 0:
        ax.text(0.5, 0.5, f"no star has {MIN_BINS} clean 50-exposure bins yet: the night has "
                f"{len(night.sets)} calibrated sets", ha="center", va="center",
                transform=ax.transAxes)
        ax.set_axis_off()
        return png_bytes(fig)
    ax.semilogy(noise.vmag, noise.rms * 1e3, "k.", ms=3, alpha=0.5,
                label=f"stars ({len(noise.ids)}), RMS of their bins")
    edges = np.arange(np.floor(noise.vmag.min() * 4) / 4, np.ceil(noise.vmag.max() * 4) / 4
                      + 0.25, 0.25)
    which = np.digitize(noise.vmag, edges)
    centres, floors, medians = [], [], []
    for k in np.unique(which).tolist():
        sel = which == k
        if sel.sum() >= 3:
            centres.append(float(np.median(noise.vmag[sel])))
            floors.append(float(np.median(noise.floor[sel])) * 1e3)
            medians.append(float(np.median(noise.rms[sel])) * 1e3)
    ax.semilogy(centres, medians, "C0o-", label="median RMS")
    ax.semilogy(centres, floors, "C3--", lw=2,
                label="expected: photon, sky, read noise and scintillation")
    ax.set_xlabel("V (mag)")
    ax.set_ylabel("RMS of the 50-exposure bins (mmag)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(loc="upper left", fontsize="small")
    fig.tight_layout()
    return png_bytes(fig)


def clouds_figure(night: LiveNight, tag: str) -> bytes:
    """The night's cloud map (the median clouds of each sky patch at its place on the sky)
    and the clouds of each patch (a row) on each exposure, against UTC."""
    c = night.clouds[np.isfinite(night.clouds["value"])]
    patches, row = np.unique(c["patch"], return_inverse=True)
    fig = Figure(figsize=(12, 4.5), dpi=_DPI)
    sky, ax = fig.subplots(1, 2, width_ratios=(1, 2))
    if len(patches):
        median = np.array([np.median(c["value"][row == i]) for i in range(len(patches))])
        ra, dec = patch_centres(patches)
        sky.scatter(ra, dec, c=median, s=400, marker="s", cmap="Greys", vmin=0.0, vmax=0.5,
                    edgecolors="C0")
        for q, x, y in zip(patches.tolist(), ra.tolist(), dec.tolist(), strict=True):
            sky.annotate(str(q), (x, y), ha="center", va="center", fontsize="x-small",
                         color="C0")
        sky.margins(0.2)
        sky.invert_xaxis()  # east to the left, as on the sky
    sky.set_xlabel("RA (deg)")
    sky.set_ylabel("dec (deg)")
    sky.set_title("median clouds per sky patch")
    points = ax.scatter(slot_utc(c["lstseq"]), row, c=c["value"], s=6, marker="s",
                        cmap="Greys", vmin=0.0, vmax=0.5)
    fig.colorbar(points, ax=ax, label="clouds (mag)")
    ax.set_yticks(range(len(patches)), [str(q) for q in patches.tolist()],
                  fontsize="x-small")
    ax.set_ylabel("sky patch (HEALPix nside 8)")
    utc_axis(ax)
    ax.set_title("per exposure")
    fig.suptitle(f"Clouds {tag}, solved live per set")
    fig.tight_layout()
    return png_bytes(fig)
