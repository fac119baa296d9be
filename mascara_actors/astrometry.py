"""Astrometric solution of a fixed camera: find it from a rough pointing, keep it checked.

A MASCARA camera does not move, so one :class:`~mascara_actors.camera_model.CameraModel`
holds for the whole night; star positions at any LST follow from it. :func:`solve` finds the
model from the configured nominal pointing, which may be a few degrees and a few degrees of
roll off: it detects stars, finds the rotation and shift that line the brightest catalogue
stars up with them (a vote over pair offsets, near the chip centre where the mismatch is
close to a rigid motion), then fits pointing, focal length, radial distortion and a
Legendre correction to ever more stars with ever tighter matching. :func:`verify` measures
bright isolated stars on a frame of each set and refits only when the residual grows.

The aflag bits follow the legacy pipeline (see :mod:`mascara_actors.photometry.flags`):
1 the sky is bright but a solution was found, 2 the sky is too bright to solve, 4 the solver
failed and the previous solution was kept.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass

import numpy as np
from scipy.optimize import least_squares
from scipy.spatial import cKDTree

from mascara_actors.camera_model import CameraModel, legendre_terms
from mascara_actors.catalogue import Catalogue
from mascara_actors.centroids import (
    BlockBackground,
    background_map,
    find_peaks,
    windowed_centroids,
)
from mascara_actors.errors import AstrometryFailed
from mascara_actors.photometry.flags import AFlag

__all__ = [
    "AFLAG_BRIGHT_SKY",
    "AFLAG_FAILED",
    "AFLAG_LARGE_RESIDUAL",
    "AFLAG_TOO_BRIGHT",
    "AstrometricSolution",
    "astrometry_stars",
    "fit_model",
    "match_stars",
    "refine_model",
    "sky_brightness_flag",
    "solve",
    "verify",
]

log = logging.getLogger(__name__)

# The bits live in the single flag table (mascara_actors.photometry.flags).
AFLAG_BRIGHT_SKY = int(AFlag.BRIGHT_SKY)
AFLAG_TOO_BRIGHT = int(AFlag.VERY_BRIGHT_SKY)
AFLAG_FAILED = int(AFlag.SOLVE_FAILED)
AFLAG_LARGE_RESIDUAL = int(AFlag.LARGE_RESIDUAL)

# Legacy thresholds on the calibrated image (lsreduce Astrometry.solve), ADU.
_BRIGHT_P95 = 9500.0
_BRIGHT_STD = 2000.0
_TOO_BRIGHT_MEDIAN = 20000.0
# The fit turns the camera by small rotations about its own axes (never degenerate, unlike
# alt/az/roll at the zenith) and adjusts the focal length and the radial distortion.
_NONLINEAR = ("tilt_x_deg", "tilt_y_deg", "spin_deg", "focal_px", "k1", "k2")
# Prior widths that keep a fit on few stars (a small chip, a cloudy frame) from wandering:
# a change of one width costs as much as one pixel of misfit of one star.
_PRIOR_K1 = 0.01
_PRIOR_K2 = 0.005
_PRIOR_LEGENDRE_PX = 2.0


@dataclass(frozen=True, slots=True)
class AstrometricSolution:
    """A camera model and how well it fitted the frame it was made or checked on."""

    model: CameraModel
    lstseq: int
    """lstseq of the frame measured."""
    nstars: int
    """Astrometry stars predicted on the chip."""
    nused: int
    """Stars matched and used in the fit (or the check)."""
    dx: float
    """RMS residual in x, pixels."""
    dy: float
    """RMS residual in y, pixels."""
    aflag: int = 0

    @property
    def dr(self) -> float:
        """RMS radial residual, pixels."""
        return float(np.hypot(self.dx, self.dy))

    def params(self) -> np.ndarray:
        """The model parameters as a flat vector (pointing, focal, k1, k2, Legendre x, y)."""
        m = self.model
        head = [getattr(m, name) for name in _NONLINEAR]
        return np.concatenate([head, m.coeffs_x, m.coeffs_y]).astype(float)


def astrometry_stars(catalogue: Catalogue, *, vmin: float, vmax: float) -> Catalogue:
    """The stars used for astrometry: ``vmin <= V <= vmax`` and not blended."""
    sel = catalogue.select(vmin=vmin, vmax=vmax)
    return sel.select(hip=sel.hip[sel["blend"] == 0])


def sky_brightness_flag(image: np.ndarray) -> int:
    """aflag bits from the sky level: 2 when too bright to solve, 1 when bright."""
    sample = image[::8, ::8]
    if np.nanmedian(sample) > _TOO_BRIGHT_MEDIAN:
        return AFLAG_TOO_BRIGHT
    if np.nanpercentile(sample, 95) > _BRIGHT_P95 or np.nanstd(sample) > _BRIGHT_STD:
        return AFLAG_BRIGHT_SKY
    return 0


def _detect(image: np.ndarray, *, nmax: int, saturation: float) -> np.ndarray:
    """Centroids (n, 2) of the brightest unsaturated stars, pixels."""
    sub = image - background_map(image)
    x, y, _ = find_peaks(sub, nmax=nmax, saturation=saturation, raw_peak=image)
    xc, yc, ok = windowed_centroids(sub, x, y)
    return np.column_stack([xc[ok], yc[ok]])


def _rigid_guess(
    det: np.ndarray,
    pred: np.ndarray,
    centre: tuple[float, float],
    *,
    max_shift: float,
    max_roll_deg: float,
    radius: float,
) -> tuple[float, np.ndarray, int]:
    """Best (roll, shift) putting ``pred`` onto ``det`` near the centre, by voting."""
    c = np.asarray(centre)
    det_c = det[np.hypot(*(det - c).T) < radius + max_shift]
    pred_c = pred[np.hypot(*(pred - c).T) < radius]
    if len(det_c) < 5 or len(pred_c) < 5:
        raise AstrometryFailed(
            f"too few stars near the chip centre to match ({len(det_c)} found, "
            f"{len(pred_c)} predicted): is the dome open and the pointing in the config right?"
        )
    bin_px = 4.0
    nbin = int(2 * max_shift / bin_px) + 1
    best = (-1, 0.0, np.zeros(2))
    for roll in np.arange(-max_roll_deg, max_roll_deg + 1e-9, 0.5):
        t = np.radians(roll)
        rot = np.array([[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]])
        p = (pred_c - c) @ rot.T + c
        d = (det_c[:, None, :] - p[None, :, :]).reshape(-1, 2)
        d = d[(np.abs(d) < max_shift).all(axis=1)]
        hist, xe, ye = np.histogram2d(
            d[:, 0], d[:, 1], bins=nbin, range=[[-max_shift, max_shift]] * 2
        )
        # Sum 2x2 neighbourhoods so a peak split over bin edges still wins.
        votes = hist[:-1, :-1] + hist[1:, :-1] + hist[:-1, 1:] + hist[1:, 1:]
        i, j = np.unravel_index(np.argmax(votes), votes.shape)
        if votes[i, j] > best[0]:
            best = (int(votes[i, j]), float(roll), np.array([xe[i + 1], ye[j + 1]]))
    return best[1], best[2], best[0]


def match_stars(pred: np.ndarray, det: np.ndarray, radius: float) -> tuple[np.ndarray, np.ndarray]:
    """Index pairs (pred, det) of mutual nearest neighbours closer than ``radius`` pixels."""
    ok = np.isfinite(pred).all(axis=1)
    idx_pred = np.flatnonzero(ok)
    if idx_pred.size == 0 or det.size == 0:
        return np.empty(0, int), np.empty(0, int)
    dist, j = cKDTree(det).query(pred[ok], distance_upper_bound=radius)
    found = np.isfinite(dist)
    ip, jd = idx_pred[found], j[found]
    back = cKDTree(pred[ok]).query(det[jd])[1]
    mutual = idx_pred[back] == ip
    return ip[mutual], jd[mutual]


def _free_terms(order: int) -> np.ndarray:
    """Indices of the Legendre terms the fit may use: degree >= 2 (lower ones are pointing)."""
    return np.array([k for k, (i, j) in enumerate(legendre_terms(order)) if i + j >= 2], int)


def fit_model(
    model: CameraModel,
    ha: np.ndarray,
    dec: np.ndarray,
    xy: np.ndarray,
    *,
    fit_distortion: bool,
    order: int,
    prior: CameraModel | None = None,
) -> CameraModel:
    """Least-squares fit of the model to matched stars (HA, dec of date) -> pixel positions.

    ``prior`` (default ``model``) holds the lens distortion the fit is pulled towards, with
    the widths above; the Legendre terms are pulled towards zero.
    """
    prior = prior or model
    nterms = len(legendre_terms(order)) if order >= 2 else 0
    free = _free_terms(order) if nterms else np.empty(0, int)
    names = list(_NONLINEAR if fit_distortion else _NONLINEAR[:4])
    base = model.replace(
        coeffs_x=tuple(np.resize(model.coeffs_x, nterms) if model.coeffs_x else [0.0] * nterms),
        coeffs_y=tuple(np.resize(model.coeffs_y, nterms) if model.coeffs_y else [0.0] * nterms),
    )
    p0 = np.concatenate(
        [
            [getattr(base, n) for n in names],
            np.asarray(base.coeffs_x)[free],
            np.asarray(base.coeffs_y)[free],
        ]
    )

    def build(p: np.ndarray) -> CameraModel:
        cx = np.zeros(nterms)
        cy = np.zeros(nterms)
        k = len(names)
        cx[free] = p[k : k + free.size]
        cy[free] = p[k + free.size :]
        return base.replace(
            **{n: float(v) for n, v in zip(names, p[: len(names)], strict=True)},
            coeffs_x=tuple(cx),
            coeffs_y=tuple(cy),
        )

    def residuals(p: np.ndarray) -> np.ndarray:
        m = build(p)
        x, y = m.hadec_to_pixel(ha, dec)
        r = [x - xy[:, 0], y - xy[:, 1]]
        if fit_distortion:
            r.append([(m.k1 - prior.k1) / _PRIOR_K1, (m.k2 - prior.k2) / _PRIOR_K2])
        r.append(p[len(names) :] / _PRIOR_LEGENDRE_PX)
        misfit: np.ndarray = np.nan_to_num(np.concatenate(r), nan=1e3)
        return misfit

    res = least_squares(residuals, p0, x_scale="jac", loss="soft_l1", f_scale=1.0)
    return build(res.x)


def _predict(model: CameraModel, ha: np.ndarray, dec: np.ndarray) -> np.ndarray:
    x, y = model.hadec_to_pixel(ha, dec)
    return np.column_stack([x, y])


def solve(
    image: np.ndarray,
    stars: Catalogue,
    nominal: CameraModel,
    *,
    lst_hours: float,
    jd: float,
    lstseq: int = 0,
    order: int = 3,
    max_offset_deg: float = 3.0,
    max_roll_deg: float = 5.0,
    min_match_fraction: float = 0.6,
    saturation: float = 63000.0,
) -> AstrometricSolution:
    """Solve the camera model on one calibrated frame, starting from ``nominal``.

    Parameters
    ----------
    image
        Calibrated science region, ADU.
    stars
        Astrometry stars (see :func:`astrometry_stars`).
    nominal
        Starting model: the configured pointing, possibly degrees off.
    lst_hours, jd
        LST (hours) and JD (UTC) at mid-exposure.
    order
        Order of the Legendre correction (terms of degree 2..order are fitted).
    max_offset_deg, max_roll_deg
        How far off the nominal pointing and roll may be, degrees.

    Raises
    ------
    AstrometryFailed
        When the sky is too bright or too few stars match; the message says which.
    """
    flag = sky_brightness_flag(image)
    if flag & AFLAG_TOO_BRIGHT:
        raise AstrometryFailed(f"lstseq {lstseq}: sky too bright to solve (median > 20000 ADU)")
    ra, dec = stars.positions_at(jd)
    ha = lst_hours * 15.0 - ra
    det = _detect(image, nmax=1500, saturation=saturation)
    pred = _predict(nominal, ha, dec)
    on = nominal.on_chip(pred[:, 0], pred[:, 1], margin=-200)
    scale_px_per_deg = nominal.focal_px * np.pi / 180.0
    bright = np.flatnonzero(on)[np.argsort(stars.vmag[on])][:400]
    roll, shift, votes = _rigid_guess(
        det[:600],
        pred[bright],
        nominal.centre,
        max_shift=max_offset_deg * scale_px_per_deg * 1.2,
        max_roll_deg=max_roll_deg,
        radius=min(nominal.nx, nominal.ny) * 0.35,
    )
    log.info(
        "astrometry: rigid guess roll %+.1f deg, shift (%.0f, %.0f) px, %d votes",
        roll,
        shift[0],
        shift[1],
        votes,
    )
    c = np.asarray(nominal.centre)
    t = np.radians(roll)
    rot = np.array([[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]])
    guess = (pred[bright] - c) @ rot.T + c + shift
    ip, jd_ = match_stars(guess, det, 12.0)
    if ip.size < 10:
        raise AstrometryFailed(f"lstseq {lstseq}: only {ip.size} stars matched the first guess")
    model = fit_model(
        nominal.replace(spin_deg=-roll),
        ha[bright[ip]],
        dec[bright[ip]],
        det[jd_],
        fit_distortion=False,
        order=0,
    )
    # Widen to the whole chip and tighten the match radius as the model improves.
    model = refine_model(
        model,
        ha,
        dec,
        det,
        steps=((8.0, 0), (4.0, order), (2.0, order)),
        prior=nominal,
        lstseq=lstseq,
    )
    return _assess(
        image,
        stars,
        model,
        ha,
        dec,
        lstseq=lstseq,
        flag=flag,
        min_match_fraction=min_match_fraction,
    )


def refine_model(
    model: CameraModel,
    ha: np.ndarray,
    dec: np.ndarray,
    det: np.ndarray,
    *,
    steps: tuple[tuple[float, int], ...],
    prior: CameraModel,
    lstseq: int,
) -> CameraModel:
    """Match predictions to detections within each (radius px, Legendre order) step and refit."""
    for radius, fit_order in steps:
        ip, jd_ = match_stars(_predict(model, ha, dec), det, radius)
        if ip.size < 20:
            raise AstrometryFailed(f"lstseq {lstseq}: only {ip.size} stars matched at {radius} px")
        model = fit_model(
            model, ha[ip], dec[ip], det[jd_], fit_distortion=True, order=fit_order, prior=prior
        )
    return model


def _assess(
    image: np.ndarray,
    stars: Catalogue,
    model: CameraModel,
    ha: np.ndarray,
    dec: np.ndarray,
    *,
    lstseq: int,
    flag: int,
    min_match_fraction: float,
) -> AstrometricSolution:
    """Residuals of ``model`` on the frame: centroids of predicted stars vs the predictions."""
    pred = _predict(model, ha, dec)
    on = model.on_chip(pred[:, 0], pred[:, 1], margin=20)
    # The background is needed only under the centroid windows: not the whole map.
    xc, yc, ok = windowed_centroids(
        image, pred[on, 0], pred[on, 1], background=BlockBackground(image)
    )
    d = np.column_stack([xc - pred[on, 0], yc - pred[on, 1]])
    good = ok & (np.hypot(*d.T) < 1.5)
    nstars = int(on.sum())
    if good.sum() < max(10, min_match_fraction * nstars):
        raise AstrometryFailed(
            f"lstseq {lstseq}: {int(good.sum())} of {nstars} predicted stars found within 1.5 px"
        )
    dd = d[good]
    # 3-sigma clip for blends and cosmic rays hitting a star
    r = np.hypot(*dd.T)
    keep = r < max(3.0 * np.sqrt(np.mean(r**2)), 0.2)
    dd = dd[keep]
    return AstrometricSolution(
        model=model,
        lstseq=lstseq,
        nstars=nstars,
        nused=int(keep.sum()),
        dx=float(np.sqrt(np.mean(dd[:, 0] ** 2))),
        dy=float(np.sqrt(np.mean(dd[:, 1] ** 2))),
        aflag=flag,
    )


def verify(
    image: np.ndarray,
    stars: Catalogue,
    solution: AstrometricSolution,
    *,
    lst_hours: float,
    jd: float,
    lstseq: int,
    max_residual_px: float = 0.5,
    min_match_fraction: float = 0.6,
    order: int = 3,
) -> AstrometricSolution:
    """Check ``solution`` on a frame of a new set; refit when its residual has grown.

    Never raises: a frame that cannot be checked or refitted returns the previous model with
    aflag 4 (failed) and the residuals it had, so the set's fluxes are flagged.
    """
    flag = sky_brightness_flag(image)
    if flag & AFLAG_TOO_BRIGHT:
        return _kept(solution, lstseq, AFLAG_TOO_BRIGHT)
    ra, dec = stars.positions_at(jd)
    ha = lst_hours * 15.0 - ra
    try:
        checked = _assess(
            image,
            stars,
            solution.model,
            ha,
            dec,
            lstseq=lstseq,
            flag=flag,
            min_match_fraction=min_match_fraction,
        )
    except AstrometryFailed as exc:
        log.warning("astrometry check failed (%s); solving again", exc)
        checked = None
    if checked is not None and checked.dr <= max_residual_px:
        return checked
    try:
        det = _detect(image, nmax=1500, saturation=63000.0)
        model = refine_model(
            solution.model,
            ha,
            dec,
            det,
            steps=((6.0, order), (3.0, order), (2.0, order)),
            prior=solution.model,
            lstseq=lstseq,
        )
        refit = _assess(
            image,
            stars,
            model,
            ha,
            dec,
            lstseq=lstseq,
            flag=flag,
            min_match_fraction=min_match_fraction,
        )
        if refit.dr > max_residual_px:
            log.warning(
                "astrometry residual %.2f px after a refit (limit %.2f px)",
                refit.dr,
                max_residual_px,
            )
            refit = dataclasses.replace(refit, aflag=refit.aflag | AFLAG_LARGE_RESIDUAL)
        return refit
    except AstrometryFailed as exc:
        log.warning("astrometry refit failed (%s); keeping the previous solution", exc)
        return _kept(solution, lstseq, flag | AFLAG_FAILED)


def _kept(solution: AstrometricSolution, lstseq: int, flag: int) -> AstrometricSolution:
    return AstrometricSolution(
        model=solution.model,
        lstseq=lstseq,
        nstars=solution.nstars,
        nused=0,
        dx=solution.dx,
        dy=solution.dy,
        aflag=flag,
    )
