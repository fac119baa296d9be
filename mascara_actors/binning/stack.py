"""Binning a set: :class:`SetStack` derotates its frames onto the middle one and averages them.

The resampling scheme and its errors are described in the package docstring
(:mod:`mascara_actors.binning`); :class:`BinnedSet` is the result, :class:`SetFlag` its
quality bits.
"""

from __future__ import annotations

import enum
import itertools
import logging
import math
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, fields

import numpy as np
from scipy import ndimage

from mascara_actors.binning.coadd import add_tiles
from mascara_actors.binning.displacement import (
    circular_mean_hours,
    displacement_at_hadec,
    reference_lstseq,
)
from mascara_actors.camera_model import CameraModel
from mascara_actors.errors import ConfigError, FrameError
from mascara_actors.photometry.flags import AFlag
from mascara_actors.rawframe import RawHeader
from mascara_actors.sidereal import (
    SET_SIZE,
    SLOT_SIDEREAL_S,
    lst_mid_hours,
    lstidx,
    set_index,
    slot_length_solar_s,
)

__all__ = ["TILE_PX", "BinnedSet", "SetFlag", "SetStack"]

log = logging.getLogger(__name__)

TILE_PX = 16
"""Side of the tiles that share one displacement, pixels."""
_EXPTIME_TOL_S = 0.05
"""Frames whose exposure time differs from the set's by more than this are refused, s."""
_MIN_COUNT = 0.5
"""Pixels with a smaller effective frame count are NaN in the binned image."""
_VAR_RATIO = 164.0 / 256.0
"""Variance of one pixel after the half-pixel Keys kernel, relative to before."""


class SetFlag(enum.IntFlag):
    """Quality bits of a binned set."""

    TOO_FEW_FRAMES = 1
    """Fewer frames than ``binning.min_frames``: no binned image was made."""
    FRAMES_REFUSED = 2
    """Some frames were refused (other camera, exposure time or set, failed astrometry...)."""
    NO_REFERENCE = 4
    """The middle frame itself is missing; its LST and JD are computed from the slot."""



@dataclass(frozen=True, slots=True)
class BinnedSet:
    """One set's binned image and its record (the slow station row comes from it).

    Times are those of MASCARA binned headers: ``lst``/``jd`` of the reference (middle)
    frame at the start of its exposure, ``lstmid``/``jdmid`` means over the frames used.
    Arrays are read-only; ``image`` and ``count`` are None when the set was not binned.
    """

    setidx: int
    """Set number, lstseq // 50."""
    lstseq: int
    """lstseq of the reference (middle) slot."""
    site: str
    camera: str
    nimages: int
    """Frames co-added."""
    lstseqs: tuple[int, ...]
    """lstseq of every frame co-added, ascending."""
    exptime: float
    """Mean exposure time, seconds."""
    ccdtemp: float
    """Mean CCD temperature, degrees C."""
    lst: float
    """LST at the start of the reference frame, hours."""
    jd: float
    """JD (UTC) at the start of the reference frame."""
    lst_align: float
    """LST the image is aligned to (mid-exposure of the reference slot), hours: star
    positions on the binned image are the model's at this LST."""
    jd_align: float
    """JD (UTC) at ``lst_align``."""
    lstmid: float
    """Mean start LST of the frames co-added, hours (taken on the circle)."""
    jdmid: float
    """Mean mid-exposure JD (UTC) of the frames co-added."""
    flag: int
    """:class:`SetFlag` bits."""
    refused: tuple[tuple[str, int], ...]
    """(reason, number of frames) of the frames refused."""
    image: np.ndarray | None
    """Mean of the frames, float32 ADU per exposure, NaN where no frame covers."""
    count: np.ndarray | None
    """Effective number of frames behind each pixel, float32."""
    noise_factor: float = 1.0
    """Variance of an aperture sum over (pixel variance x pixels), >= 1: resampling moves
    part of each pixel's noise into its neighbours, so the per-pixel sky scatter of the
    binned image underestimates the noise of sums over pixels by this factor."""

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, np.ndarray):
                value.flags.writeable = False

    @property
    def binned(self) -> bool:
        """True when the set has a binned image."""
        return self.image is not None

    @property
    def nrefused(self) -> int:
        """Number of frames refused."""
        return sum(n for _, n in self.refused)


_SHIFT_ROWS = 32
"""Image rows per block of :func:`_half_shift`: the block's operands stay in the cache."""


def _half_shift(a: np.ndarray, axis: int) -> np.ndarray:
    """``a`` (2-D) resampled half a pixel forward along ``axis`` with the Keys cubic kernel.

    ``out[i] = (-a[i-1] + 9 a[i] + 9 a[i+1] - a[i+2]) / 16``, zeros beyond the edges,
    computed as ``(((a[i] + a[i+1]) * 9 - a[i-1]) - a[i+2]) / 16`` in ``a``'s type, block by
    block of rows.
    """
    out = np.empty_like(a)
    n = a.shape[0]
    for r0 in range(0, n, _SHIFT_ROWS):
        r1 = min(r0 + _SHIFT_ROWS, n)
        if axis == 0:
            _half_shift_rows(a, out, r0, r1)
        else:
            _half_shift_columns(a[r0:r1], out[r0:r1])
    return out


def _half_shift_columns(a: np.ndarray, out: np.ndarray) -> None:
    """:func:`_half_shift` along the columns (axis 1) of a block of whole rows."""
    np.add(a[:, :-1], a[:, 1:], out=out[:, :-1])
    out[:, -1] = a[:, -1]
    out *= 9.0
    out[:, 1:] -= a[:, :-1]
    out[:, :-2] -= a[:, 2:]
    out *= 1.0 / 16.0


def _half_shift_rows(a: np.ndarray, out: np.ndarray, r0: int, r1: int) -> None:
    """Rows ``r0:r1`` of :func:`_half_shift` along the rows (axis 0) of ``a``."""
    n = a.shape[0]
    hi = min(r1, n - 1)  # rows with a next row
    if hi > r0:
        np.add(a[r0:hi], a[r0 + 1:hi + 1], out=out[r0:hi])
    if r1 == n:
        out[n - 1] = a[n - 1]
    block = out[r0:r1]
    block *= 9.0
    lo = max(r0, 1)  # rows with a previous row
    if r1 > lo:
        out[lo:r1] -= a[lo - 1:r1 - 1]
    hi = min(r1, n - 2)  # rows with the row after next
    if hi > r0:
        out[r0:hi] -= a[r0 + 2:hi + 2]
    block *= 1.0 / 16.0


class SetStack:
    """Co-adds the frames of one set as they arrive (memory: about six images).

    Parameters
    ----------
    model
        The set's camera model (astrometric solution), sized to the science region.
    setidx
        The set number (:func:`~mascara_actors.sidereal.set_index` of its lstseqs).
    min_frames
        Fewer accepted frames than this: :meth:`finish` makes no image (config
        ``binning.min_frames``).
    camera, site
        Camera letter and site name the frames must have; default: the first frame's.
    exptime_s
        Exposure time the frames must have, seconds; default: the first frame's.
    tile
        Side of the tiles sharing one displacement, pixels.
    threads
        Threads adding the tiles of a frame (the compiled loop releases the GIL);
        2 nearly halves :meth:`add` on a 2-core machine.

    Notes
    -----
    :meth:`add` refuses (and counts, by reason) frames of another camera, site, set,
    exposure time or size, frames whose astrometry is not sound (aflag 2 too bright to
    check, 4 failed, 8 large residual; aflag 1 "bright sky, solved anyway" is kept, where the
    legacy pipeline threw the whole set away) and repeats.
    Frame pixels that are NaN count as missing for that frame only.
    """

    def __init__(
        self,
        model: CameraModel,
        setidx: int,
        *,
        min_frames: int = 5,
        camera: str | None = None,
        site: str | None = None,
        exptime_s: float | None = None,
        tile: int = TILE_PX,
        threads: int = 1,
    ) -> None:
        if min_frames < 1:
            raise ConfigError(f"binning.min_frames={min_frames} must be >= 1")
        if tile < 4:
            raise ConfigError(f"tile={tile} must be >= 4 pixels")
        self.model = model
        self.setidx = int(setidx)
        self.min_frames = int(min_frames)
        self.camera, self.site, self.exptime_s = camera, site, exptime_s
        self.tile = int(tile)
        if threads < 1:
            raise ConfigError(f"threads={threads} must be >= 1")
        self.threads = int(threads)
        self._pool = ThreadPoolExecutor(self.threads) if self.threads > 1 else None
        self.lstseq_ref = reference_lstseq(self.setidx)
        slot = int(lstidx(self.lstseq_ref))
        self.lst_align = (slot + 0.5) * SLOT_SIDEREAL_S / 3600.0
        self.nx, self.ny = model.nx, model.ny
        b = self.tile
        self._nty, self._ntx = -(-self.ny // b), -(-self.nx // b)
        cy = np.arange(self._nty) * b + (b - 1) / 2.0
        cx = np.arange(self._ntx) * b + (b - 1) / 2.0
        # The displacement field is smooth: it is computed on every other tile centre
        # (32 px apart) and interpolated linearly. The sky positions of those nodes at the
        # reference LST are the same for every frame of the set.
        self._ky = np.r_[np.arange(0, self._nty, 2), self._nty - 1] if self._nty > 1 else [0]
        self._kx = np.r_[np.arange(0, self._ntx, 2), self._ntx - 1] if self._ntx > 1 else [0]
        self._ky, self._kx = np.unique(self._ky), np.unique(self._kx)
        kx, ky = np.meshgrid(cx[self._kx], cy[self._ky])
        self._knots = (kx, ky)
        self._ha, self._dec = model.pixel_to_hadec(kx, ky)
        fy = np.interp(np.arange(self._nty), self._ky, np.arange(self._ky.size))
        fx = np.interp(np.arange(self._ntx), self._kx, np.arange(self._kx.size))
        gy, gx = np.meshgrid(fy, fx, indexing="ij")
        self._fine = np.stack([gy.ravel(), gx.ravel()])
        nt = self._nty * self._ntx
        self._sum = np.zeros((4 * nt, b * b), np.float32)
        # Frames per tile and phase; per-pixel shortfalls (edges, NaN) only where they occur.
        self._tcount = np.zeros(4 * nt, np.uint16)
        self._missing: np.ndarray | None = None
        self._tile_y = np.repeat(np.arange(self._nty) * b, self._ntx)
        self._tile_x = np.tile(np.arange(self._ntx) * b, self._nty)
        self._headers: list[RawHeader] = []
        self._ratio_sum = 0.0  # sum over accepted tiles of their pixel-variance ratio
        self._ratio_n = 0
        self.refused: Counter[str] = Counter()

    # --- frames ----------------------------------------------------------------------------

    @property
    def nimages(self) -> int:
        """Frames accepted so far."""
        return len(self._headers)

    def _refuse(self, reason: str, h: RawHeader, detail: str) -> bool:
        self.refused[reason] += 1
        log.warning("set %d: frame %d refused (%s): %s", self.setidx, h.lstseq, reason, detail)
        return False

    def _check(self, image: np.ndarray, h: RawHeader, aflag: int) -> bool:
        if self.camera is None:
            self.camera, self.site = h.camera, h.site
        if self.exptime_s is None:
            self.exptime_s = h.exptime
        if h.camera != self.camera or h.site != self.site:
            return self._refuse("camera", h, f"{h.site} {h.camera}, set is of "
                                f"{self.site} {self.camera}")
        if int(set_index(h.lstseq)) != self.setidx:
            return self._refuse("set", h, f"belongs to set {int(set_index(h.lstseq))}")
        if abs(h.exptime - self.exptime_s) > _EXPTIME_TOL_S:
            return self._refuse("exptime", h, f"{h.exptime} s, set has {self.exptime_s} s")
        if image.shape != (self.ny, self.nx):
            return self._refuse("shape", h, f"{image.shape}, model is {(self.ny, self.nx)}")
        if aflag & ~AFlag.BRIGHT_SKY:
            return self._refuse("astrometry", h, f"aflag={aflag}")
        if any(x.lstseq == h.lstseq for x in self._headers):
            return self._refuse("duplicate", h, "already added")
        return True

    def add(self, image: np.ndarray, header: RawHeader, *, aflag: int = 0,
            finite: bool = False) -> bool:
        """Add one calibrated frame (science region, ADU); False when it is refused.

        Parameters
        ----------
        image : ndarray, shape (ny, nx)
            Calibrated science region, ADU; NaN pixels are left out. Not modified.
        header : RawHeader
            The frame's header (camera, site, lstseq, LST, JD, exposure time).
        aflag : int
            Astrometry flag of the frame's solution; any bit but 1 (bright sky) refuses it.
        finite : bool
            The caller knows ``image`` holds no NaN (:attr:`CalibratedFrame.finite
            <mascara_actors.calibration.CalibratedFrame.finite>`): the pass over the whole
            image that looks for NaN is skipped.
        """
        if self._check(image, header, aflag) is False:
            return False
        if len(self._headers) >= 255:
            raise FrameError(f"set {self.setidx}: more than 255 frames; sets hold {SET_SIZE}")
        frame = np.asarray(image, np.float32)
        # One cheap max tells whether the per-pixel NaN mask is needed at all (max is NaN
        # when any pixel is).
        nan = None
        if not finite and frame.size and np.isnan(frame.max()):
            nan = np.isnan(frame)
        if nan is not None:
            frame = np.where(nan, np.float32(0.0), frame)
        kdx, kdy = displacement_at_hadec(
            self.model, self._ha, self._dec, *self._knots,
            lst_ref_hours=self.lst_align,
            lst_hours=lst_mid_hours(header.lst, header.jd, header.jdmid) % 24.0,
        )
        dx = ndimage.map_coordinates(kdx, self._fine, order=1, mode="nearest")
        dy = ndimage.map_coordinates(kdy, self._fine, order=1, mode="nearest")
        self._accumulate(frame, nan, dx, dy)
        self._headers.append(header)
        return True

    def _accumulate(
        self, frame: np.ndarray, nan: np.ndarray | None, dx: np.ndarray, dy: np.ndarray
    ) -> None:
        b, ny, nx = self.tile, self.ny, self.nx
        ok = np.isfinite(dx) & np.isfinite(dy)
        hx = np.round(2.0 * np.where(ok, dx, 0.0)) / 2.0
        hy = np.round(2.0 * np.where(ok, dy, 0.0)) / 2.0
        ix, iy = np.floor(hx).astype(np.intp), np.floor(hy).astype(np.intp)
        phase = 2 * (hy != iy) + (hx != ix)
        ox, oy = self._tile_x + ix, self._tile_y + iy  # source window origin
        ox_c, oy_c = np.clip(ox, 0, nx - b), np.clip(oy, 0, ny - b)
        inside = ok & (ox == ox_c) & (oy == oy_c)
        edge = ok & ~inside & (ox > -b) & (ox < nx) & (oy > -b) & (oy < ny)
        rows = phase * dx.size + np.arange(dx.size)
        src_y, src_x, dest = oy_c[inside], ox_c[inside], rows[inside]
        missing = self._missing_counts() if nan is not None else None

        def add(part: slice) -> None:
            # tiles are distinct, so the parts add to disjoint accumulator rows
            add_tiles(frame, src_y[part], src_x[part], dest[part], self._sum, nan=nan,
                      missing=missing)

        if self._pool is None:
            add(slice(0, dest.size))
        else:
            cuts = np.linspace(0, dest.size, self.threads + 1).astype(int)
            parts = [slice(lo, hi) for lo, hi in itertools.pairwise(cuts)]
            for future in [self._pool.submit(add, part) for part in parts]:
                future.result()
        self._tcount[dest] += np.uint16(1)
        # The half-pixel kernel leaves (1 + 81 + 81 + 1) / 256 of a pixel's variance per
        # shifted axis; its noise goes into neighbouring pixels instead (see noise_factor).
        ph = phase[inside]
        self._ratio_sum += float(np.sum(_VAR_RATIO ** ((ph & 1) + (ph >> 1))))
        self._ratio_n += int(ph.size)
        e = np.flatnonzero(edge)
        if e.size:
            r = oy[e, None, None] + np.arange(b)[None, :, None]
            c = ox[e, None, None] + np.arange(b)[None, None, :]
            valid = (r >= 0) & (r < ny) & (c >= 0) & (c < nx)
            rc, cc = np.clip(r, 0, ny - 1), np.clip(c, 0, nx - 1)
            if nan is not None:
                valid &= ~nan[rc, cc]
            vals = np.where(valid, frame[rc, cc], np.float32(0.0))
            self._sum[rows[e]] += vals.reshape(-1, b * b)
            self._tcount[rows[e]] += np.uint16(1)
            self._missing_counts()[rows[e]] += (~valid).reshape(-1, b * b).astype(np.uint8)

    def _missing_counts(self) -> np.ndarray:
        if self._missing is None:
            self._missing = np.zeros(self._sum.shape, np.uint8)
        return self._missing

    # --- result ----------------------------------------------------------------------------

    def _image_layout(self, acc: np.ndarray | None, phase: int) -> np.ndarray:
        """Phase ``phase`` of the sums (``acc``) or, for None, of the frame counts, as an
        image (one float32 copy)."""
        b, nty, ntx = self.tile, self._nty, self._ntx
        nt = nty * ntx
        out = np.empty((nty * b, ntx * b), np.float32)
        view = out.reshape(nty, b, ntx, b)
        if acc is not None:
            view[...] = acc[phase * nt:(phase + 1) * nt].reshape(nty, ntx, b, b).transpose(
                0, 2, 1, 3)
            return out
        view[...] = self._tcount[phase * nt:(phase + 1) * nt].reshape(nty, 1, ntx, 1)
        if self._missing is not None:
            miss = self._missing[phase * nt:(phase + 1) * nt].reshape(nty, ntx, b, b)
            view -= miss.transpose(0, 2, 1, 3)
        return out

    def _resampled(self, acc: np.ndarray | None) -> np.ndarray:
        """Sum of the four phase accumulators (None: frame counts), each shifted by its
        half pixel."""
        p = [self._image_layout(acc, k) for k in range(4)]  # (y, x) phases 00, 01, 10, 11
        # S00 + X(S01) + Y(S10 + X(S11)): three half-pixel passes in all.
        total = p[0]
        total += _half_shift(p[1], 1)
        p[3] = _half_shift(p[3], 1)
        p[2] += p[3]
        total += _half_shift(p[2], 0)
        return total[: self.ny, : self.nx]

    def finish(self) -> BinnedSet:
        """The binned set: mean image and record; flagged when too few frames came."""
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None
        hs = sorted(self._headers, key=lambda h: h.lstseq)
        flag = SetFlag(0)
        if self.refused:
            flag |= SetFlag.FRAMES_REFUSED
        ref = next((h for h in hs if h.lstseq == self.lstseq_ref), None)
        solar_slot_d = slot_length_solar_s() / 86400.0
        if ref is None:
            flag |= SetFlag.NO_REFERENCE
        if hs:
            near = min(hs, key=lambda h: abs(h.lstseq - self.lstseq_ref))
            jd_ref = near.jd + (self.lstseq_ref - near.lstseq) * solar_slot_d
        else:
            jd_ref = math.nan
        lst_ref = self.lst_align - 0.5 * SLOT_SIDEREAL_S / 3600.0
        image = count = None
        if len(hs) < self.min_frames:
            flag |= SetFlag.TOO_FEW_FRAMES
            log.warning("set %d: %d frames, fewer than %d: not binned", self.setidx, len(hs),
                        self.min_frames)
        else:
            count = self._resampled(None)
            total = self._resampled(self._sum)
            with np.errstate(invalid="ignore", divide="ignore"):
                image = np.divide(total, count)
            image[~(count >= _MIN_COUNT)] = np.nan
        return BinnedSet(
            setidx=self.setidx,
            lstseq=self.lstseq_ref,
            site=self.site or "",
            camera=self.camera or "",
            nimages=len(hs),
            lstseqs=tuple(h.lstseq for h in hs),
            exptime=float(np.mean([h.exptime for h in hs])) if hs else math.nan,
            ccdtemp=float(np.mean([h.ccdtemp for h in hs])) if hs else math.nan,
            lst=ref.lst if ref is not None else lst_ref,
            jd=ref.jd if ref is not None else jd_ref,
            lst_align=self.lst_align,
            jd_align=jd_ref + 0.5 * solar_slot_d,
            lstmid=circular_mean_hours(np.array([h.lst for h in hs])) if hs else math.nan,
            jdmid=float(np.mean([h.jdmid for h in hs])) if hs else math.nan,
            flag=int(flag),
            refused=tuple(sorted(self.refused.items())),
            image=image,
            count=count,
            noise_factor=self._ratio_n / self._ratio_sum if self._ratio_sum > 0 else 1.0,
        )
