"""``mascara-actors --replay DIR``: reduce a recorded night headless, with a progress bar."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import anyio
import anyio.to_thread

from hw.recorded import RecordedNight
from mascara_actors.actors.pipeline import NightPlan, NightReport, paced_frames, run_night
from mascara_actors.actors.reducer import WorkerSpec
from mascara_actors.actors.summariser import NightState
from mascara_actors.calibration import master_dark, master_flat, read_master, write_master
from mascara_actors.catalogue import Catalogue
from mascara_actors.config import CameraConfig, Config, load_config
from mascara_actors.ephemeris import night_date
from mascara_actors.errors import CalibrationError, ConfigError
from mascara_actors.progress import ProgressBar
from mascara_actors.rawframe import read_raw
from mascara_actors.sidereal import slot_length_solar_s
from mascara_actors.storage import NightId, get_dark_filename, update_dark_filename

__all__ = ["run"]


def _camera(config: Config, night: RecordedNight, camera_id: str | None) -> CameraConfig:
    first = night.frames()[0]
    header = read_raw(first.path).header
    if camera_id is None:
        sites = [s for s in config.sites.values() if s.name == header.site]
        if not sites:
            raise ConfigError(
                f"{first.path}: SITE-OBS {header.site!r} is not a configured site "
                f"({sorted(config.sites)}); pass --camera"
            )
        camera_id = sites[0].code + header.camera
    camera = config.camera(camera_id)
    if camera.letter != first.camera:
        raise ConfigError(f"--camera {camera_id} but the frames are of camera {first.camera}")
    return camera


def _masters(
    night: RecordedNight, config: Config, camera: CameraConfig, night_dir: Path, state_dir: Path
) -> tuple[str | None, str | None, list[str]]:
    """Master dark and flat for the night: built from its calibration frames when there are
    enough (and entered in the dark table), else the newest of the dark table."""
    notes: list[str] = []
    binned = night_dir / "binned"
    binned.mkdir(parents=True, exist_ok=True)
    cal = config.reduction.calibration
    darks = [f.path for f in night.frames("dark")]
    dark_path: str | None = None
    if len(darks) >= cal.min_dark:
        dark = master_dark(darks, calibration=cal)
        path = binned / dark.filename
        if not path.exists():
            write_master(path, dark)
        update_dark_filename(camera.letter, str(path), state_dir, nmax=cal.dark_history)
        dark_path = str(path)
    else:
        try:
            dark_path = str(get_dark_filename(camera.letter, state_dir))
            notes.append(f"{len(darks)} darks in the night: using {dark_path} from the dark table")
        except CalibrationError:
            notes.append(f"{len(darks)} darks and no dark table: subtracting the overscan level")
    flats = [f.path for f in night.frames("flat")]
    flat_path: str | None = None
    if len(flats) >= cal.min_flat and dark_path is not None:
        flat = master_flat(flats, read_master(dark_path), calibration=cal)
        path = binned / flat.filename
        if not path.exists():
            write_master(path, flat)
        flat_path = str(path)
    return dark_path, flat_path, notes


def run(args: argparse.Namespace, *, directory: Path, out: Path) -> int:
    """Replay ``directory`` into ``out``; exit code 0 only when the night was reduced."""
    config = load_config(args.config)
    night = RecordedNight(directory)
    camera = _camera(config, night, getattr(args, "camera", None))
    science = [(f.lstseq, f.path) for f in night.frames("science")]
    if not science:
        raise ConfigError(f"recorded night {directory} holds no science frames")
    first = read_raw(science[0][1]).header
    date = night_date(first.jd, camera.site)
    nid = NightId(date.strftime("%Y%m%d"), camera.site.code, camera.letter)
    out = Path(out)
    night_dir = nid.night_dir(out)
    print(
        f"Replaying {len(science)} frames of {camera.id} (night {nid.night}) from {directory}",
        file=sys.stderr,
    )
    dark, flat, notes = _masters(night, config, camera, night_dir, out / "state")
    for note in notes:
        print(f"note: {note}", file=sys.stderr)
    realtime = bool(getattr(args, "realtime", False))
    plan = NightPlan(
        config=config,
        camera=camera,
        night=nid,
        out_dir=out,
        worker=WorkerSpec(camera.id, str(config.directory), dark, flat),
        frames_expected=len(science),
        live=realtime,
    )
    state = NightState()
    report = anyio.run(
        _replay,
        plan,
        science,
        state,
        realtime,
        float(getattr(args, "speed", 1.0)),
        bool(getattr(args, "in_process", False)),
        backend="trio",
    )
    _print_report(report, len(science))
    return 0 if report.ok and not report.stopped_early else 1


async def _replay(
    plan: NightPlan, science, state: NightState, realtime: bool, speed: float, in_process: bool
) -> NightReport:  # type: ignore[no-untyped-def]
    catalogue = await anyio.to_thread.run_sync(Catalogue.load)
    bar = ProgressBar(plan.frames_expected)
    result: list[NightReport] = []

    async def main() -> None:
        result.append(
            await run_night(
                plan,
                paced_frames(science, realtime=realtime, speed=speed),
                catalogue,
                state=state,
                handle_signals=True,
                in_process=in_process,
            )
        )
        tg.cancel_scope.cancel()

    async with anyio.create_task_group() as tg:
        tg.start_soon(main)
        while True:
            note = f"errors {state.frames_failed}" if state.frames_failed else ""
            bar.update(state.frames_done, note)
            await anyio.sleep(0.25)
    bar.update(state.frames_done)
    bar.close()
    return result[0]


def _print_report(report: NightReport, expected: int) -> None:
    s = report.state
    real_s = s.frames_reduced * slot_length_solar_s()
    lines = [
        f"frames: {s.frames_reduced} reduced, {s.frames_failed} failed, "
        f"{report.skipped_frames} already on disk, of {expected}",
        f"stars: {s.stars_measured} measurements, {s.flags_raised} flagged",
        f"sets written: {len(report.saved.sets_written)}; astrometry residual "
        f"{s.astrometry_dr:.3f} px",
        f"wall time: {report.wall_s:.1f} s ({real_s / max(report.wall_s, 1e-9):.1f} x real time)",
    ]
    for f in report.nightly_files:
        lines.append(f"nightly file: {f}")
    for _, level, lstseq, message in list(s.problems)[-10:]:
        lines.append(f"{level}: lstseq {lstseq}: {message}")
    if report.stopped_early:
        lines.append("stopped before the end: run the same command again to finish the night")
    elif not report.ok:
        lines.append("the night was NOT reduced: see the errors above")
    print("\n".join(lines), file=sys.stderr)
