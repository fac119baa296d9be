"""Record simulated nights: one camera's raw frames plus a truth file (DESIGN.md section 3).

A recorded night is a directory of raw frames named by lstseq, exactly as a station writes
them, so ``--replay DIR`` needs nothing else. :func:`record_night` renders them with
:class:`~hw.sim.sky.SimulatedSky`: the dusk calibration (bias, dark with the shutter closed,
optional flats) in the slots just before the science frames, then the science frames, and
``truth.fits`` with what the reduction should find (:mod:`hw.sim.truth`).

The night is built in a sibling scratch directory ``.part-NAME`` and renamed into place at
the end, so a directory under the final name is always complete. Truth rows are streamed to
disk frame by frame, so memory stays flat for a whole full-size night. Everything is
deterministic for a seed: two runs with the same arguments give byte-identical files.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hw.sim.sky import SimulatedSky, SimulationSettings
from hw.sim.truth import (
    FRAMES_DTYPE,
    TRUTH_FILENAME,
    truth_file_rows,
    truth_primary_header,
    write_truth,
)
from mascara_actors.atomic_files import fsync_dir
from mascara_actors.camera_model import CameraModel
from mascara_actors.catalogue import Catalogue
from mascara_actors.config import CameraConfig, SensorConfig
from mascara_actors.errors import StorageError
from mascara_actors.rawframe import raw_filename, write_raw

__all__ = ["ProgressCallback", "RecordedNightInfo", "record_night"]

log = logging.getLogger(__name__)

_COMPRESSIONS = (".fits", ".fits.gz", ".fits.fz")


@dataclass(frozen=True, slots=True)
class RecordedNightInfo:
    """What :func:`record_night` wrote.

    Attributes
    ----------
    directory
        The night's directory.
    camera_id
        Camera id, e.g. ``"LPC"``; ``camera`` is its letter as in the CAMERA header key.
    first_lstseq
        Slot of the first calibration frame (``start_lstseq`` when there are none).
    start_lstseq, end_lstseq
        First and last science slot (inclusive).
    n_bias, n_dark, n_flat, n_science
        Frames of each kind written.
    n_truth_rows
        Rows of the TRUTH table (stars x science frames).
    truth_path
        The truth file.
    elapsed_s
        Wall-clock time of the recording, seconds.
    """

    directory: Path
    camera_id: str
    camera: str
    first_lstseq: int
    start_lstseq: int
    end_lstseq: int
    n_bias: int
    n_dark: int
    n_flat: int
    n_science: int
    n_truth_rows: int
    truth_path: Path
    elapsed_s: float

    @property
    def n_frames(self) -> int:
        """Raw frames written, all kinds."""
        return self.n_bias + self.n_dark + self.n_flat + self.n_science


ProgressCallback = Callable[[int, int], None]
"""``progress(done, total)``: frames written so far, of all the night's frames."""


def record_night(
    outdir: str | os.PathLike[str],
    camera: CameraConfig,
    catalogue: Catalogue,
    *,
    start_lstseq: int,
    n_science: int,
    sensor: SensorConfig | None = None,
    true_model: CameraModel | None = None,
    settings: SimulationSettings | None = None,
    n_bias: int = 10,
    n_dark: int = 10,
    n_flat: int = 0,
    compression: str = ".fits.fz",
    progress: ProgressCallback | None = None,
) -> RecordedNightInfo:
    """Render and write a recorded night of one camera (raw frames and ``truth.fits``).

    Calibration frames take the ``n_bias + n_dark + n_flat`` slots just before
    ``start_lstseq``, in that order (bias, dark, flat); science frames take the slots
    ``start_lstseq .. start_lstseq + n_science - 1``.

    Parameters
    ----------
    outdir
        The night's directory; it must not exist or be empty. Its parent is created.
    camera
        The configured camera (site, letter, lens, nominal pointing).
    catalogue
        The star catalogue (Hipparcos).
    start_lstseq
        Slot of the first science frame.
    n_science
        Number of science frames, >= 0.
    sensor
        Sensor to render (default ``camera.sensor``); a crop gives small nights.
    true_model
        The camera's real geometry (default: the nominal model of ``camera``).
    settings
        Seed, magnitude limit, clouds, trails, transits (default ``SimulationSettings()``).
    n_bias, n_dark, n_flat
        Calibration frames, >= 0 each.
    compression
        ``".fits"``, ``".fits.gz"`` or ``".fits.fz"`` (Rice, lossless for uint16).
    progress
        Called as ``progress(done, total)`` with ``done = 0`` first and after every frame
        (``total`` = raw frames), from the caller's thread; it should return quickly.

    Returns
    -------
    RecordedNightInfo

    Raises
    ------
    ValueError
        For a negative count, no frames at all, an unknown compression, or calibration
        slots before lstseq 0.
    StorageError
        If ``outdir`` is not empty or the files cannot be written.
    """
    if compression not in _COMPRESSIONS:
        raise ValueError(f"compression must be one of {_COMPRESSIONS}, got {compression!r}")
    counts = {"n_science": n_science, "n_bias": n_bias, "n_dark": n_dark, "n_flat": n_flat}
    plan = _plan(start_lstseq, counts)
    outdir = Path(outdir)
    _check_empty(outdir)
    t0 = time.perf_counter()
    sky = SimulatedSky(camera, catalogue, true_model=true_model, sensor=sensor, settings=settings)
    scratch = outdir.parent / f".part-{outdir.name}"
    done_ok = False
    try:
        _make_scratch(scratch)
        frames, rows_path, n_rows = _write_frames(
            scratch, sky, plan, ext=compression, progress=progress
        )
        primary = truth_primary_header(sky, camera, plan, start_lstseq, counts, compression)
        write_truth(
            scratch / TRUTH_FILENAME,
            rows_path,
            n_rows,
            primary=primary,
            frames=frames,
            model=sky.model,
            settings=sky.settings,
        )
        rows_path.unlink()
        _move_into_place(scratch, outdir)
        done_ok = True
    except OSError as exc:
        raise StorageError(
            f"cannot write the recorded night {outdir}: {exc}; check the disk space and "
            "permissions of its parent directory"
        ) from exc
    finally:
        if not done_ok:
            shutil.rmtree(scratch, ignore_errors=True)
    elapsed = time.perf_counter() - t0
    log.info(
        "recorded %d frames (%d science) of %s in %s in %.1f s",
        len(plan),
        n_science,
        camera.id,
        outdir,
        elapsed,
    )
    return RecordedNightInfo(
        directory=outdir,
        camera_id=camera.id,
        camera=camera.letter,
        first_lstseq=plan[0][0],
        start_lstseq=int(start_lstseq),
        end_lstseq=int(start_lstseq) + n_science - 1,
        n_bias=n_bias,
        n_dark=n_dark,
        n_flat=n_flat,
        n_science=n_science,
        n_truth_rows=n_rows,
        truth_path=outdir / TRUTH_FILENAME,
        elapsed_s=elapsed,
    )


def _plan(start_lstseq: int, counts: dict[str, int]) -> list[tuple[int, str]]:
    """(lstseq, kind) of every frame: bias, dark and flat just before ``start_lstseq``, then
    the science frames; ValueError for bad counts."""
    for name, value in counts.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"{name} must be an integer >= 0, got {value!r}")
    if sum(counts.values()) == 0:
        raise ValueError("nothing to record: n_science, n_bias, n_dark and n_flat are all 0")
    n_bias, n_dark, n_flat = counts["n_bias"], counts["n_dark"], counts["n_flat"]
    n_cal = n_bias + n_dark + n_flat
    first = int(start_lstseq) - n_cal
    if first < 0:
        raise ValueError(
            f"start_lstseq = {start_lstseq} leaves no room for {n_cal} calibration slots "
            f"before it: start at lstseq >= {n_cal}"
        )
    return (
        [(first + i, "bias") for i in range(n_bias)]
        + [(first + n_bias + i, "dark") for i in range(n_dark)]
        + [(first + n_bias + n_dark + i, "flat") for i in range(n_flat)]
        + [(int(start_lstseq) + i, "science") for i in range(counts["n_science"])]
    )


def _check_empty(outdir: Path) -> None:
    if outdir.exists():
        if not outdir.is_dir():
            raise StorageError(f"{outdir} exists and is not a directory: choose a new directory")
        entries = sorted(p.name for p in outdir.iterdir())
        if entries:
            shown = ", ".join(entries[:5]) + (" ..." if len(entries) > 5 else "")
            raise StorageError(
                f"{outdir} is not empty (it holds {shown}): a recorded night needs a new or "
                "empty directory"
            )


def _make_scratch(scratch: Path) -> None:
    """A new, empty scratch directory (what an interrupted recording left is removed)."""
    scratch.parent.mkdir(parents=True, exist_ok=True)
    if scratch.exists():
        log.warning("removing %s left by an interrupted recording", scratch)
        shutil.rmtree(scratch)
    scratch.mkdir()


def _write_frames(
    scratch: Path,
    sky: SimulatedSky,
    plan: list[tuple[int, str]],
    *,
    ext: str,
    progress: ProgressCallback | None,
) -> tuple[np.ndarray, Path, int]:
    """Render and write the frames of ``plan`` into ``scratch``, streaming their truth rows
    to a scratch file; the FRAMES table, that file and its number of rows."""
    frames = np.zeros(len(plan), FRAMES_DTYPE)
    rows_path = scratch / ".truth.rows"
    n_rows = 0
    if progress is not None:
        progress(0, len(plan))
    with rows_path.open("wb") as rows:
        for i, (lstseq, kind) in enumerate(plan):
            frame = sky.exposure(lstseq, kind)
            name = raw_filename(lstseq, sky.camera.letter, kind, ext=ext)
            write_raw(scratch / name, frame.raw, frame.header)
            if len(frame.truth):
                rows.write(truth_file_rows(frame.truth).tobytes())
                n_rows += len(frame.truth)
            h = frame.header
            frames[i] = (lstseq, kind, name, h.jdmid, h.exptime, h.ccdtemp, len(frame.truth))
            if progress is not None:
                progress(i + 1, len(plan))
    return frames, rows_path, n_rows


def _move_into_place(scratch: Path, outdir: Path) -> None:
    """Rename the finished night into place (``rename(2)`` replaces an empty directory
    atomically), durably."""
    fsync_dir(scratch)
    os.replace(scratch, outdir)
    fsync_dir(outdir.parent)
