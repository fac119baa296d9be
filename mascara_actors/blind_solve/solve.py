"""The blind solve: hash the image's triangles, vote on an orientation, fit and accept.

See the package docstring (:mod:`mascara_actors.blind_solve`) for the method and the
acceptance rule.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass

import numpy as np
from scipy import special
from scipy.spatial import cKDTree

from mascara_actors.astrometry import (
    AFLAG_TOO_BRIGHT,
    AstrometricSolution,
    fit_model,
    match_stars,
    refine_model,
    sky_brightness_flag,
)
from mascara_actors.blind_solve.detection import Detections, detect_stars
from mascara_actors.blind_solve.index import BlindIndex
from mascara_actors.blind_solve.triangles import scaled_keys, triangles
from mascara_actors.camera_model import CameraModel
from mascara_actors.catalogue import Catalogue
from mascara_actors.errors import AstrometryFailed

__all__ = [
    "ACCEPT_LOG10_PFA",
    "ACCEPT_RADIUS_PX",
    "CHECK_LOG10_PFA",
    "CHECK_RADIUS_PX",
    "CLUSTER_RADIUS",
    "IMAGE_STARS",
    "MAX_CANDIDATES",
    "MIN_DETECTIONS",
    "VOTE_BIN",
    "BlindSolution",
    "BlindSolveFailed",
    "blind_solve",
]

log = logging.getLogger(__name__)

#: Detections hashed (the brightest).
IMAGE_STARS = 150
#: Orientation clusters: radius in the 9-d space of the rotation matrices (~1.5 degrees).
CLUSTER_RADIUS = 0.04
#: Vote cells: width in each component of the sky vectors of the camera axes (~2 degrees).
VOTE_BIN = 0.035
#: Orientation clusters checked at most, densest first.
MAX_CANDIDATES = 6
#: Acceptance: match radius (px) and false-alarm probability of the final check.
ACCEPT_RADIUS_PX = 1.5
ACCEPT_LOG10_PFA = -9.0
#: Candidate check on the index stars: radius (px) and false-alarm probability.
CHECK_RADIUS_PX = 10.0
CHECK_LOG10_PFA = -6.0
#: Fewer detections than this: nothing to solve (overcast, shutter closed).
MIN_DETECTIONS = 15


class BlindSolveFailed(AstrometryFailed):
    """No blind solution. ``kind`` says why, in one word: ``too_bright`` (twilight, Moon,
    daylight), ``no_stars`` (overcast, dome or shutter closed), ``too_few_matched`` (no
    orientation matched enough stars to rule out chance) or ``below_horizon`` (the stars
    matched are below the horizon: the frame's site or time is wrong). The other
    attributes say what was found, for a message an operator can act on."""

    def __init__(
        self,
        kind: str,
        reason: str,
        *,
        lstseq: int = 0,
        ndetected: int = 0,
        nmatched: int = 0,
        best_pointing: tuple[float, float, float] | None = None,
        mirrored: bool | None = None,
    ) -> None:
        self.kind = kind
        self.reason = reason
        self.lstseq = lstseq
        self.ndetected = ndetected
        self.nmatched = nmatched
        self.best_pointing = best_pointing
        self.mirrored = mirrored
        super().__init__(f"lstseq {lstseq}: {self.describe()}")

    def describe(self) -> str:
        """Why, the stars detected and matched and the best pointing tried, in one line."""
        text = f"{self.reason}; {self.ndetected} stars detected, {self.nmatched} matched"
        if self.best_pointing is not None:
            alt, az, roll = self.best_pointing
            parity = ", mirrored" if self.mirrored else ""
            text += f"; best pointing tried alt {alt:.1f} az {az:.1f} roll {roll:.1f} deg{parity}"
        return text


# --------------------------------------------------------------------------------------------
# The solve


@dataclass(frozen=True, slots=True)
class BlindSolution:
    """A blind solution and how it was found."""

    solution: AstrometricSolution
    """The refined camera model and its residuals (as from the solve from a pointing)."""
    pointing: tuple[float, float, float]
    """(alt, az, roll) of the optical axis, degrees, tilts folded in (config convention)."""
    mirrored: bool
    """Mirrored parity."""
    ndetected: int
    """Stars detected on the frame."""
    nmatched: int
    """Predicted astrometry stars matched within ACCEPT_RADIUS_PX."""
    npredicted: int
    """Astrometry stars predicted on the chip."""
    log10_false_alarm: float
    """log10 of the probability that the matches are chance (times the trials)."""
    matched: np.ndarray
    """(k,) rows of the astrometry stars matched (for plots)."""
    seconds: float
    """Wall time of the whole solve, s."""
    timings: dict[str, float]
    """Seconds per step: detect, hash, vote, refine, accept."""

    @property
    def model(self) -> CameraModel:
        return self.solution.model


def _procrustes(cam: np.ndarray, sky: np.ndarray, weight: np.ndarray | None = None) -> np.ndarray:
    """Orthogonal matrices M (..., 3, 3), rotation or reflection, minimising
    sum |M c - s|^2 over the rows c of ``cam`` and s of ``sky`` (..., k, 3)."""
    if weight is not None:
        sky = sky * weight[..., None]
    h = np.einsum("...ki,...kj->...ij", sky, cam)
    u, _, vt = np.linalg.svd(h)
    rotation: np.ndarray = u @ vt
    return rotation


def _hypotheses(
    cam: np.ndarray, index: BlindIndex, sky: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every (image triangle, index triangle) pair of matching keys: the image and index
    vertex rows (m, 3) each and the orientation (m, 3, 3) from camera to sky it implies."""
    itri, ikeys = triangles(cam)
    if len(itri) == 0:
        return np.empty((0, 3), int), np.empty((0, 3), int), np.empty((0, 3, 3))
    hits = cKDTree(scaled_keys(ikeys)).sparse_distance_matrix(
        index.tree, 1.0, output_type="ndarray"
    )
    img = itri[hits["i"]]
    idx = index.triangles[hits["j"]].astype(np.int64)
    return img, idx, _procrustes(cam[img], sky[idx])


def _consensus(img: np.ndarray, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One index star per image star (and back) from the vertex pairs of a cluster: the most
    frequent pairing wins. Returns image rows, index rows and how often each pair was seen."""
    pairs, counts = np.unique(
        np.stack([img.ravel(), idx.ravel()], axis=1), axis=0, return_counts=True
    )
    order = np.argsort(-counts, kind="stable")
    pairs, counts = pairs[order], counts[order]
    _, first_img = np.unique(pairs[:, 0], return_index=True)
    keep = np.zeros(len(pairs), bool)
    keep[first_img] = True
    _, first_idx = np.unique(pairs[keep][:, 1], return_index=True)
    rows = np.flatnonzero(keep)[first_idx]
    return pairs[rows, 0], pairs[rows, 1], counts[rows]


def _votes(orients: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Bin the orientations by where they send the camera's x and optical axes (cells of
    VOTE_BIN, about 2 degrees) and their parity. Returns the votes of each hypothesis (its
    bin's count) and its bin number.

    A histogram keeps the vote linear in the number of hits (10^5 on a rich frame).
    """
    m = len(orients)
    q = np.floor(orients[:, :, [0, 2]].reshape(m, 6) / VOTE_BIN).astype(np.int64)
    parity = (np.linalg.det(orients) > 0).astype(np.int64) if m else np.empty(0, np.int64)
    shift = math.ceil(1.0 / VOTE_BIN) + 1  # cell indices lie in [-shift, shift)
    key = parity
    for col in q.T:
        key = key * (2 * shift) + (col + shift)
    _, inverse, counts = np.unique(key, return_inverse=True, return_counts=True)
    return counts[inverse], inverse


def _log10_pfa(k: int, n: int, radius: float, density: float, trials: int) -> float:
    """log10 of the chance of ``k`` or more of ``n`` predictions having a detection within
    ``radius`` px at random, with detections at ``density`` per px^2, over ``trials``."""
    lam = n * math.pi * radius**2 * density
    if k <= 0:
        return 0.0
    # scipy.special, not scipy.stats's poisson (the same functions): importing scipy.stats
    # cost every archive worker a quarter to half a second
    with np.errstate(divide="ignore"):
        log_p = float(np.log(special.pdtrc(k - 1, lam)))  # P(X >= k)
    if not math.isfinite(log_p):
        # Beyond double precision: P(X >= k) = pmf(k) (1 + lam/(k+1) + ...), k >> lam.
        log_pmf = float(special.xlogy(k, lam) - special.gammaln(k + 1) - lam)
        log_p = log_pmf - math.log1p(-min(lam / (k + 1), 0.5))
    return min(log_p / math.log(10.0) + math.log10(max(trials, 1)), 0.0)


def _check(
    orient: np.ndarray,
    sky: np.ndarray,
    base: CameraModel,
    det_xy: np.ndarray,
    density: float,
    trials: int,
) -> tuple[np.ndarray, int, float]:
    """Check an orientation on the index stars: predict them, match the detections within
    CHECK_RADIUS_PX, refit the orientation on the matches and match again.

    Returns the refined orientation, the number matched and log10 of the false-alarm
    probability.
    """
    cam_det = base.pixel_to_camera(det_xy[:, 0], det_xy[:, 1])
    k, log10_p = 0, 0.0
    for _ in range(2):
        x, y = base.camera_to_pixel(sky @ orient)
        on = base.on_chip(x, y)
        pred = np.column_stack([x[on], y[on]])
        ip, jd = match_stars(pred, det_xy, CHECK_RADIUS_PX)
        k = int(ip.size)
        log10_p = _log10_pfa(k, int(on.sum()), CHECK_RADIUS_PX, density, trials)
        if k < 3:
            break
        orient = _procrustes(cam_det[jd], sky[np.flatnonzero(on)[ip]])
    return orient, k, log10_p


def blind_solve(
    image: np.ndarray,
    index: BlindIndex,
    stars: Catalogue,
    lens: CameraModel,
    *,
    lst_hours: float,
    jd: float,
    lstseq: int = 0,
    order: int = 3,
    min_match_fraction: float = 0.6,
    saturation: float = 63000.0,
) -> BlindSolution:
    """Solve a calibrated frame from scratch.

    Parameters
    ----------
    image
        Calibrated science region, ADU.
    index
        The triangle index (:meth:`BlindIndex.load`).
    stars
        Astrometry stars for the fit and the acceptance
        (:func:`~mascara_actors.astrometry.astrometry_stars`).
    lens
        A model of the camera whose pointing, tilts, parity and Legendre terms are ignored:
        only the site latitude, focal length, radial distortion, refraction and chip size
        are used.
    lst_hours, jd
        LST (hours) and JD (UTC) at mid-exposure.
    order
        Order of the Legendre correction fitted.
    min_match_fraction
        Fraction of the predicted astrometry stars that must be matched.

    Raises
    ------
    BlindSolveFailed
        With the reason (sky too bright, no stars, too few matched, sky below the horizon),
        the stars detected and matched and the best orientation tried.
    """
    t0 = time.perf_counter()
    timings: dict[str, float] = {}
    flag = sky_brightness_flag(image)
    if flag & AFLAG_TOO_BRIGHT:
        level = float(np.nanmedian(np.asarray(image)[::8, ::8]))
        raise BlindSolveFailed(
            "too_bright",
            f"sky too bright to solve (median {level:.0f} ADU > 20000: twilight, Moon glare "
            "or daylight)",
            lstseq=lstseq,
        )
    det = detect_stars(image, saturation=saturation)
    timings["detect"] = time.perf_counter() - t0
    if len(det) < MIN_DETECTIONS:
        raise BlindSolveFailed(
            "no_stars",
            "no stars to solve on (overcast, dome or shutter closed?)",
            lstseq=lstseq,
            ndetected=len(det),
        )
    base = lens.replace(
        alt_deg=90.0,
        az_deg=0.0,
        roll_deg=0.0,
        tilt_x_deg=0.0,
        tilt_y_deg=0.0,
        spin_deg=0.0,
        mirror=False,
        coeffs_x=(),
        coeffs_y=(),
    )
    t = time.perf_counter()
    bright = det.xy[:IMAGE_STARS]
    cam = base.pixel_to_camera(bright[:, 0], bright[:, 1])
    ra, dec = index.stars.positions_at(jd)
    sky = base.enu_vectors(lst_hours * 15.0 - ra, dec)
    img, idx, orients = _hypotheses(cam, index, sky)
    timings["hash"] = time.perf_counter() - t
    ntrials = max(len(orients), 1)
    log.info("blind solve: %d detections, %d triangle hits", len(det), len(orients))

    t_vote = time.perf_counter()
    flat = orients.reshape(-1, 9)
    votes, bins = _votes(orients)
    # The check uses detections about as bright as the index stars.
    check_xy = det.xy[: 4 * IMAGE_STARS]
    check_density = len(check_xy) / float(det.shape[0] * det.shape[1])
    parity_ref = np.sign(np.linalg.det(base.axes))
    ra_a, dec_a = stars.positions_at(jd)
    ha_a = lst_hours * 15.0 - ra_a
    det_fit = det.xy[~det.saturated][:1500]
    best: tuple[int, CameraModel] | None = None
    tried = np.zeros(len(flat), bool)
    for _ in range(MAX_CANDIDATES):
        free = np.flatnonzero(~tried)
        if free.size == 0 or votes[free].max() < 2:
            break
        seed = free[np.argmax(votes[free])]
        # The cluster: every hit near the mean orientation of the seed's bin.
        centre = flat[bins == bins[seed]].mean(axis=0)
        dist = np.linalg.norm(flat - centre, axis=1)
        members = np.flatnonzero(dist < CLUSTER_RADIUS)
        tried[dist < 2 * CLUSTER_RADIUS] = True
        tried[bins == bins[seed]] = True
        if members.size == 0:
            continue
        ci, cu, cw = _consensus(img[members], idx[members])
        orient = _procrustes(cam[ci], sky[cu], cw.astype(float))
        orient, k, log10_p = _check(orient, sky, base, check_xy, check_density, ntrials)
        mirrored = bool(np.sign(np.linalg.det(orient)) != parity_ref)
        axes = (np.diag([-1.0, 1.0, 1.0]) @ orient.T) if mirrored else orient.T
        model0 = base.with_axes(axes, mirror=mirrored)
        log.info(
            "blind solve: candidate with %d votes: alt %.2f az %.2f roll %.2f%s, %d index "
            "stars matched, log10 P(chance) %.1f",
            votes[seed],
            *model0.pointing(),
            " mirrored" if mirrored else "",
            k,
            log10_p,
        )
        if best is None or k > best[0]:
            best = (k, model0)
        if log10_p > CHECK_LOG10_PFA:
            continue
        t = time.perf_counter()
        timings["vote"] = t - t_vote  # up to the candidate that passed the check
        try:
            model = _refine_from(model0, ha_a, dec_a, det_fit, order=order, lstseq=lstseq)
        except AstrometryFailed as exc:
            log.info("blind solve: candidate did not refine (%s)", exc)
            continue
        timings["refine"] = time.perf_counter() - t
        t = time.perf_counter()
        result = _accept(
            model,
            ha_a,
            dec_a,
            det,
            min_match_fraction=min_match_fraction,
            trials=ntrials,
            lstseq=lstseq,
            flag=flag,
        )
        timings["accept"] = time.perf_counter() - t
        if isinstance(result, str):
            log.info("blind solve: candidate refused (%s)", result)
            best = (max(best[0], k), model)
            continue
        solution, matched, log10_pfa = result
        return BlindSolution(
            solution=solution,
            pointing=model.pointing(),
            mirrored=model.mirror,
            ndetected=len(det),
            nmatched=int(matched.size),
            npredicted=solution.nstars,
            log10_false_alarm=log10_pfa,
            matched=matched,
            seconds=time.perf_counter() - t0,
            timings=timings,
        )
    raise BlindSolveFailed(
        "too_few_matched",
        "too few stars matched the catalogue in any orientation to rule out chance "
        "(clouds, a wrong lens, or not a sky frame?)",
        lstseq=lstseq,
        ndetected=len(det),
        nmatched=best[0] if best else 0,
        best_pointing=best[1].pointing() if best else None,
        mirrored=best[1].mirror if best else None,
    )


def _refine_from(
    model0: CameraModel,
    ha: np.ndarray,
    dec: np.ndarray,
    det_xy: np.ndarray,
    *,
    order: int,
    lstseq: int,
) -> CameraModel:
    """The fit of the solve from a pointing, started from a blind orientation."""
    pred = np.column_stack(model0.hadec_to_pixel(ha, dec))
    ip, jd = match_stars(pred, det_xy, 15.0)
    if ip.size < 10:
        raise AstrometryFailed(f"lstseq {lstseq}: only {ip.size} stars within 15 px")
    model = fit_model(model0, ha[ip], dec[ip], det_xy[jd], fit_distortion=False, order=0)
    return refine_model(
        model,
        ha,
        dec,
        det_xy,
        steps=((8.0, 0), (4.0, order), (2.0, order)),
        prior=model0,
        lstseq=lstseq,
    )


def _accept(
    model: CameraModel,
    ha: np.ndarray,
    dec: np.ndarray,
    det: Detections,
    *,
    min_match_fraction: float,
    trials: int,
    lstseq: int,
    flag: int,
) -> tuple[AstrometricSolution, np.ndarray, float] | str:
    """The solution if it passes the acceptance rule (module docstring), else why not."""
    x, y = model.hadec_to_pixel(ha, dec)
    on = np.flatnonzero(model.on_chip(x, y, margin=20))
    pred = np.column_stack([x[on], y[on]])
    ip, jd = match_stars(pred, det.xy, ACCEPT_RADIUS_PX)
    n, k = len(on), int(ip.size)
    log10_p = _log10_pfa(k, n, ACCEPT_RADIUS_PX, det.density, trials)
    need = max(10, math.ceil(min_match_fraction * n))
    if k < need or log10_p > ACCEPT_LOG10_PFA:
        return f"{k} of {n} predicted stars matched within {ACCEPT_RADIUS_PX} px, {need} needed"
    # A real frame cannot show mostly stars below the horizon: then the site or the time is
    # not the frame's. (Half, not all: a low camera may see below the horizon in the
    # simulator, which has no ground.)
    alt = np.degrees(np.arcsin(np.clip(model.enu_vectors(ha[on[ip]], dec[on[ip]])[:, 2], -1, 1)))
    if np.median(alt) < 0.0:
        raise BlindSolveFailed(
            "below_horizon",
            f"the stars matched lie below the horizon of latitude {model.latitude_deg:.2f} "
            "at this LST: is the frame from another site, or its time wrong?",
            lstseq=lstseq,
            ndetected=len(det),
            nmatched=k,
            best_pointing=model.pointing(),
            mirrored=model.mirror,
        )
    good = ~det.saturated[jd]
    if not good.any():  # residuals from saturated stars rather than none
        good[:] = True
    d = det.xy[jd[good]] - pred[ip[good]]
    r = np.hypot(*d.T)
    # 3-sigma clip for blends and cosmic rays hitting a star, as the solve from a pointing
    keep = r < max(3.0 * float(np.sqrt(np.mean(r**2))), 0.2)
    d = d[keep]
    solution = AstrometricSolution(
        model=model,
        lstseq=lstseq,
        nstars=n,
        nused=int(keep.sum()),
        dx=float(np.sqrt(np.mean(d[:, 0] ** 2))),
        dy=float(np.sqrt(np.mean(d[:, 1] ** 2))),
        aflag=flag,
    )
    return solution, on[ip], log10_p
