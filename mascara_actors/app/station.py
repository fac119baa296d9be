"""One camera's night at the station: dusk calibration, science until dawn, dawn calibration.

:class:`Station` drives a live camera (:class:`~hw.driver.CameraDriver`) through a whole
night, as the legacy ``rawdir_monitor`` did, on the camera's own clock:

1. **Window.** The CCD cooler is switched on at ``ccd_setpoint_c``; from the camera clock
   and the Sun, the night in progress or the next one
   (:func:`~mascara_actors.night_window.night_window`, ``[night]`` in ``reduction.toml``).
2. **Dusk calibration.** ``n_bias`` bias frames, ``n_dark`` darks (shutter closed) and
   ``n_flat`` twilight flats, armed to end ``calibration_gap_slots`` before the first science
   slot. Their masters are made in a worker thread and the master dark enters the dark
   table. Started after dusk, the station skips this step and calibrates with the newest
   dark of the table (or takes darks first when the table is empty).
3. **Science** from the first slot of the window (or now) to the last before dawn, reduced
   by :func:`~mascara_actors.actors.pipeline.run_night` as the frames come.
4. **Dawn calibration** as soon as the science frames stop, while the pipeline finishes
   (final binned set, nightly combine); its master dark tops the dark table for the next
   night.
5. **Summary** of the night (HTML, text, plots), mailed when asked.

**A camera that stays away** (no answer, no frame due, for ``camera_timeout_s`` of ``[night]``
in ``reduction.toml``, seconds of the camera's clock: a simulated camera at ``speed`` x gives
up ``speed`` times sooner in real time) ends the night as dawn would, with the dawn chain for
what was measured: the frames received are reduced, the last set binned, the nightly files
and the summary written; no dawn calibration is tried. An error event (``ActorFailed`` from
the camera) in the night's event log says which camera, since when and what to check, and
:attr:`~mascara_actors.app.reports.StationReport.camera_lost` holds the same sentence
(``mascara-actors live`` exits 1).

**A restarted night** goes on where the earlier run stopped: the science frames of the night
already in the raw archive are handed to the reduction first (those of sets already on disk
are skipped by the pipeline), and the camera is armed from the first slot after them and after
the sets already done, never re-exposing a slot of the archive (a raw file is never
overwritten). ``max_science_frames`` counts the frames on disk too. Every run of slots that
gives no science frame (lost on the way, a camera that lost its sequence, an operator dark
sequence, a restart) is reported as a warning event naming the slots and the reason.

The operator may :meth:`~Station.take_darks` in the night (the science sequence is aborted,
a dark sequence taken, science re-armed; the night's reduction keeps the master it started
with, so that the whole night is calibrated alike) or :meth:`~Station.end_night` early (the
science stops as at dawn and the end-of-night chain runs). Setting ``stop`` (SIGINT, or
quitting the console) stops the night for a restart instead: nothing is combined, and
running the station again resumes the same night.
"""

# Over 500 lines: one night's sequence (calibrations, science, darks on demand, a lost camera,
# a restart) as methods of one object that share its state; the reports and the camera watch
# live beside it.

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from contextlib import aclosing
from dataclasses import replace
from datetime import UTC, datetime
from functools import partial
from pathlib import Path

import anyio
import anyio.to_thread

from hw.driver import CameraDriver, CameraStatus, SerialCamera
from hw.live import CameraLost, LiveFrames, LiveStats, live_frames
from mascara_actors.actors import summariser
from mascara_actors.actors.gate import PauseGate
from mascara_actors.actors.pipeline import (
    NightPlan,
    run_night,
    stop_on_signals,
    waiting_events,
)
from mascara_actors.actors.resume import resume_point
from mascara_actors.app.camera_watch import CameraWatch
from mascara_actors.app.reports import KINDS, CalibrationRun, StationReport, calibration_start
from mascara_actors.calibration import (
    Masters,
    adopt_legacy_table,
    dark_from_table,
    make_masters,
)
from mascara_actors.catalogue import Catalogue
from mascara_actors.config import CameraConfig, Config, SensorConfig
from mascara_actors.errors import (
    CalibrationError,
    CameraDisconnected,
    CameraTimeout,
)
from mascara_actors.frames import FrameReady
from mascara_actors.messages import (
    ActorFailed,
    Event,
    WarningEvent,
    WorkerSpec,
)
from mascara_actors.night_state import NightState
from mascara_actors.night_window import NightWindow, night_window
from mascara_actors.rawframe import parse_raw_filename
from mascara_actors.sidereal import SET_SIZE
from mascara_actors.storage import NightId, binned_dir, event_log_path
from mascara_actors.summary import summarise_night

__all__ = ["Station"]

log = logging.getLogger(__name__)



class Station:
    """A camera's night; see the module docstring.

    Parameters
    ----------
    driver
        The open camera (``async with`` it around :meth:`run`).
    config, camera, sensor
        The configuration, the camera and its sensor (the camera's full readout).
    out_dir
        Output root: the night goes to ``out_dir/{night}{SITE}{CAM}/`` and the dark table
        to ``out_dir/state/``.
    state
        The night's live counters (the console reads them); ``phase`` is kept here too.
    stop
        Set it to stop for a restart (see the module docstring).
    window
        The night's slots; default from the camera clock and the Sun.
    lead_slots, poll_s
        As for :func:`~hw.live.live_frames`.
    worker_mode
        Where the reduction runs (``process``, ``thread`` or ``inline``).
    handle_signals
        The first SIGINT/SIGTERM sets ``stop``, a second one cancels at once (main thread
        only).
    send_mail
        Mail the summary at the end of the night.
    max_science_frames
        End the science after this many frames, as if dawn had come (a short trial night);
        the night's science frames already in the raw archive (a restart) count too. None:
        until dawn.
    gate
        The operator's pause switch for the reduction (the camera goes on; frames spool).
    """

    def __init__(
        self,
        driver: CameraDriver,
        *,
        config: Config,
        camera: CameraConfig,
        sensor: SensorConfig,
        out_dir: Path,
        state: NightState | None = None,
        stop: anyio.Event | None = None,
        window: NightWindow | None = None,
        lead_slots: int = 2,
        poll_s: float | None = None,
        worker_mode: str | None = None,
        handle_signals: bool = False,
        send_mail: bool = False,
        max_science_frames: int | None = None,
        gate: PauseGate | None = None,
    ) -> None:
        if max_science_frames is not None and max_science_frames < 1:
            raise ValueError(f"max_science_frames={max_science_frames} must be >= 1 or None")
        self.driver = driver
        self.config = config
        self.camera = camera
        self.sensor = sensor
        self.out_dir = Path(out_dir)
        self.state = state if state is not None else NightState()
        self.stop = stop if stop is not None else anyio.Event()
        self.window = window
        self.lead_slots = lead_slots
        self.poll_s = poll_s
        self.worker_mode = worker_mode
        self.handle_signals = handle_signals
        self.send_mail = send_mail
        self.max_science_frames = max_science_frames
        self.gate = gate
        self.watch = CameraWatch(driver, camera.id, self._report)
        """The camera's status for the console (run :meth:`CameraWatch.run` beside
        :meth:`run`)."""
        # Station events (camera link) for the night's summariser, the one writer of state.
        self._events, self._events_in = anyio.create_memory_object_stream[Event](64)
        self._science_sources: list[LiveFrames] = []
        """The night's science sources, the counters of :attr:`stats`."""
        self.phase = "starting"
        """What the station is doing now, for the operator."""
        self.night_dir: Path | None = None
        self.latest: FrameReady | None = None
        """The latest science frame from the camera."""
        self.report: StationReport | None = None
        self._science_on = False
        self._ended = False
        self._session_stop = anyio.Event()
        self._darks_wanted: anyio.Event | None = None
        self._darks_reply = ""
        self.camera_lost: str | None = None
        """Why the night ended early when the camera stayed away (see the module docstring)."""
        self._timeout_s: float | None = None
        """``camera_timeout_s`` in real seconds (divided by the camera's clock speed)."""
        self._speed = 1.0

    @property
    def state_dir(self) -> Path:
        """Where the dark table lives."""
        return self.out_dir / "state"

    @property
    def stats(self) -> LiveStats:
        """Counters of the science frames from the camera (all the night's sequences so far),
        a snapshot."""
        return sum((source.stats for source in self._science_sources), LiveStats())

    # -- operator actions --------------------------------------------------------------------

    @property
    def night_over(self) -> bool:
        """The science ended as at dawn and the dawn sequence was taken: this night is over
        (started again, the station would wait for the next one)."""
        report = self.report
        return report is not None and any(c.when == "dawn" for c in report.calibrations)

    def end_night(self) -> bool:
        """End the science now, as if dawn had come; False if it is not running."""
        if self._ended or self.stop.is_set():
            return False
        self._ended = True
        self._session_stop.set()
        return True

    async def take_darks(self) -> str:
        """Interrupt the science for a dark sequence; returns what was done."""
        if not self._science_on or self._ended or self.stop.is_set():
            return f"take darks: not now, the station is {self.phase}"
        if self._darks_wanted is not None:
            return "take darks: a dark sequence is already under way"
        done = anyio.Event()
        self._darks_wanted = done
        self._session_stop.set()
        await done.wait()
        return self._darks_reply

    # -- station events ---------------------------------------------------------------------

    def _report(self, event: Event) -> None:
        """Hand an event of the station to the night's summariser (logged and applied when
        the night's pipeline runs; dropped, with a log line, when too many wait)."""
        try:
            self._events.send_nowait(event)
        except (anyio.WouldBlock, anyio.ClosedResourceError):
            log.warning("station event dropped (no night takes events now): %s", event)

    # -- the night ---------------------------------------------------------------------------

    async def run(self, catalogue: Catalogue) -> StationReport:
        """Run the night to its end (or to ``stop``); see the module docstring."""
        try:
            if not self.handle_signals:
                return await self._run(catalogue)
            stopped_by: list[str] = []
            async with anyio.create_task_group() as tg:
                tg.start_soon(stop_on_signals, self.stop, tg.cancel_scope, stopped_by)
                report = await self._run(catalogue)
                tg.cancel_scope.cancel()
            report.stopped_by = stopped_by[0] if stopped_by else None
            return report
        finally:
            with anyio.CancelScope(shield=True):
                await self._record_late_events()
            self._events.close()
            self._events_in.close()

    async def _record_late_events(self) -> None:
        """Station events no night pipeline took (the camera lost during a calibration,
        say): to the night's log and state, through the summariser."""
        late = waiting_events(self._events_in)
        if late and self.night_dir is not None:
            await summariser.record(late, log_path=event_log_path(self.night_dir), state=self.state)

    async def _run(self, catalogue: Catalogue) -> StationReport:
        setpoint = self.config.reduction.night.ccd_setpoint_c
        await self.driver.set_setpoint(setpoint)
        await self.driver.set_cooler(True)
        status = await self.driver.status()
        self._speed = status.speed
        self._timeout_s = self.config.reduction.night.camera_timeout_s / status.speed
        log.info(
            "station: cooler on, set-point %.1f C (CCD at %.1f C)",
            setpoint,
            status.cooling.ccdtemp_c,
        )
        window = self.window
        if window is None:
            window = await anyio.to_thread.run_sync(
                night_window, self.camera.site, status.jd, self.config.reduction.night
            )
        nid = NightId(window.night.strftime("%Y%m%d"), self.camera.site.code, self.camera.letter)
        self.night_dir = nid.night_dir(self.out_dir)
        report = StationReport(window=window, night_dir=self.night_dir)
        self.report = report
        log.info(
            "station: night %s of camera %s, science slots %d..%d (%d); camera clock at %d",
            window.night,
            self.camera.id,
            window.start_lstseq,
            window.stop_lstseq - 1,
            window.slots,
            status.lstseq,
        )
        dusk_first = calibration_start(window, self.config, lead_slots=self.lead_slots)
        if status.lstseq + self.lead_slots < dusk_first:
            self.phase = f"waiting for dusk: calibration from lstseq {dusk_first}"
            report.calibrations.append(await self._calibrate("dusk", first=dusk_first))
        elif not await anyio.to_thread.run_sync(
            adopt_legacy_table, self.camera, self.state_dir
        ):
            self.phase = "dark sequence (no master dark yet)"
            report.calibrations.append(await self._calibrate("start", kinds=("dark",)))
        if self.stop.is_set() or self.camera_lost is not None:
            self.phase = "stopped" if self.camera_lost is None else "camera lost"
            return report
        masters = report.calibrations[-1].masters if report.calibrations else Masters(
            None, None, None
        )
        if masters.dark is None:
            masters = await anyio.to_thread.run_sync(self._table, masters)
        slots_left = max(0, window.stop_lstseq - max(window.start_lstseq, status.lstseq))
        plan = NightPlan(
            config=self.config,
            camera=self.camera,
            night=nid,
            out_dir=self.out_dir,
            worker=WorkerSpec(
                self.camera.id, str(self.config.directory), masters.dark, masters.flat
            ),
            frames_expected=(slots_left if self.max_science_frames is None
                             else min(slots_left, self.max_science_frames)),
            live=True,
            calibration_notes=masters.notes,
        )
        science_over = anyio.Event()
        async with anyio.create_task_group() as tg:

            async def science() -> None:
                try:
                    report.science = await run_night(
                        plan,
                        self._science(window, science_over),
                        catalogue,
                        state=self.state,
                        stop=self.stop,
                        worker_mode=self.worker_mode,
                        gate=self.gate,
                        outside_events=self._events_in,
                    )
                finally:
                    science_over.set()

            tg.start_soon(science)
            await science_over.wait()
            if not self.stop.is_set() and self.camera_lost is None:
                self.phase = "dawn calibration (the pipeline finishes the night)"
                report.calibrations.append(await self._calibrate("dawn"))
            if not self.stop.is_set():
                self.phase = "end of night: final set and nightly combine"
        if report.science is not None and report.science.reduced and not self.stop.is_set():
            self.phase = "end of night: summary"
            outcome = await anyio.to_thread.run_sync(
                partial(summarise_night, self.night_dir, send=self.send_mail)
            )
            report.summary_html = outcome.html_path
        if self.camera_lost is not None:
            self.phase = "camera lost: the night ended with what was measured"
        else:
            self.phase = "night done" if report.ok else "stopped"
        return report

    def _table(self, masters: Masters) -> Masters:
        """``masters`` with the newest dark of the table when it has none of its own."""
        dark, note = dark_from_table(self.camera, self.state_dir)
        log.log(logging.INFO if dark else logging.WARNING, "station: %s", note)
        return replace(masters, dark=dark, notes=(*masters.notes, note))

    async def _science(
        self, window: NightWindow, over: anyio.Event
    ) -> AsyncIterator[FrameReady]:
        """Science frames until dawn, re-armed around operator dark sequences; on a restart
        the night's frames on disk first (see the module docstring)."""
        assert self.night_dir is not None
        raw = self.night_dir / "raw"
        limit = self.max_science_frames
        try:
            on_disk, after = await anyio.to_thread.run_sync(self._on_disk, window)
            for frame in on_disk:
                self.latest = frame
                yield frame
            resuming = after > 0
            # why the slots between the last science frame and the next sequence have none
            why_gap = "the station was not running (a restarted night)" if resuming else ""
            while not (self._ended or self.stop.is_set()):
                now = (await self._camera_status()).lstseq
                first = max(window.start_lstseq, now + self.lead_slots, after)
                count = window.stop_lstseq - first
                wanted = None if limit is None else limit - len(on_disk) - self.stats.frames
                if count < 1 or (wanted is not None and wanted < 1):
                    break
                if why_gap and first > after:
                    self._gap(after, first - 1, why_gap)
                if resuming:
                    resuming = False
                    log.info(
                        "station: resuming the night: %d science frames on disk went to the "
                        "reduction (sets already done are skipped); camera %s armed from lstseq "
                        "%d",
                        len(on_disk),
                        self.camera.id,
                        first,
                    )
                self._session_stop = anyio.Event()
                self._science_on = True
                if first > now + self.lead_slots:
                    what = "dusk" if first == window.start_lstseq else "the resume slot"
                    self.phase = f"waiting for {what}: science from lstseq {first}"
                frames = live_frames(
                    self.driver,
                    raw,
                    camera=self.camera.letter,
                    site=self.camera.site.name,
                    sensor=self.sensor,
                    first_lstseq=first,
                    count=count,
                    stop=self._session_stop,
                    lead_slots=self.lead_slots,
                    poll_s=self.poll_s,
                    max_frames=wanted,
                    camera_timeout_s=self._timeout_s,
                    on_gap=self._gap,
                )
                self._science_sources.append(frames)
                after = first
                async with aclosing(frames) as science:
                    async for frame in science:
                        self.phase = "science"
                        self.latest = frame
                        after = frame.lstseq + 1
                        yield frame
                self._science_on = False
                if self._darks_wanted is None:
                    if self._session_stop.is_set():
                        break
                    # the sequence ended (or the camera lost it): arm what is left
                    why_gap = "the science sequence ended early and was armed again"
                    continue
                why_gap = "an operator dark sequence, then arming the science again"
                await self._operator_darks()
        except CameraLost as exc:
            self._lose(exc)
        finally:
            self._science_on = False
            over.set()

    def _on_disk(self, window: NightWindow) -> tuple[list[FrameReady], int]:
        """The night's science frames already in the raw archive, in lstseq order, and the
        first slot after them and after the sets already done (0 when there is none)."""
        assert self.night_dir is not None
        raw = self.night_dir / "raw"
        found: list[tuple[int, Path]] = []
        if raw.is_dir():
            for path in raw.iterdir():
                parsed = parse_raw_filename(path.name)
                if parsed is None:
                    continue
                lstseq, letter, kind = parsed
                if (
                    kind == "science"
                    and letter == self.camera.letter
                    and window.start_lstseq <= lstseq < window.stop_lstseq
                ):
                    found.append((lstseq, path))
        found.sort()
        done = resume_point(self.night_dir).done_sets
        after = max(
            found[-1][0] + 1 if found else 0, (max(done) + 1) * SET_SIZE if done else 0
        )
        if found or done:
            log.info(
                "station: night %s on disk: %d sets done, %d science frames in the raw "
                "archive (lstseq %s); science goes on from lstseq %d at the earliest",
                self.night_dir.name,
                len(done),
                len(found),
                f"{found[0][0]}..{found[-1][0]}" if found else "none",
                after,
            )
        now = time.time()
        return [FrameReady(path=p, lstseq=s, arrived=now) for s, p in found], after

    # -- problems of the camera, for the event log --------------------------------------------

    def _gap(self, first: int, last: int, why: str) -> None:
        """Slots ``first..last`` gave no science frame: a warning event."""
        n = last - first + 1
        self._report(
            WarningEvent(
                source="camera",
                lstseq=first,
                message=(
                    f"camera {self.camera.id}: "
                    + (f"{n} slots {first}..{last}" if n > 1 else f"slot {first}")
                    + f" without a science frame: {why}"
                ),
            )
        )

    def _lose(self, exc: CameraLost) -> None:
        """The camera stayed away: end the night with what was measured (an error event)."""
        if self.camera_lost is not None:
            return
        since = datetime.fromtimestamp(exc.since, UTC).strftime("%Y-%m-%d %H:%M:%S")
        timeout = self.config.reduction.night.camera_timeout_s
        clock = ""
        if self._speed != 1:
            clock = f", {exc.timeout_s:.1f} s at clock speed {self._speed:g}"
        driver = self.driver
        links = (
            f"its serial port {driver.link.path} and readout link "
            f"{driver.readout.host}:{driver.readout.port}"
            if isinstance(driver, SerialCamera)
            else "its control and readout links"
        )
        message = (
            f"camera {self.camera.id} lost: nothing from it since {since} UTC "
            f"({exc.silent_s:.1f} s; [night] camera_timeout_s = {timeout:g} s of camera time"
            f"{clock}); last error: {exc.last_error}. The night ends with the frames measured "
            "(reduced, binned, written to the nightly files and the summary). Check the "
            f"camera's power and {links}; run the same command again to go on with the night"
        )
        log.error("station: %s", message)
        self.camera_lost = message
        if self.report is not None:
            self.report.camera_lost = message
        self._ended = True
        self._report(ActorFailed(source="camera", message=message))

    async def _camera_status(self) -> CameraStatus:
        """The camera's status, asked again while it is silent or away, up to the camera
        timeout (then :class:`~hw.live.CameraLost`)."""
        t0, wall = time.monotonic(), time.time()
        while True:
            try:
                return await self.driver.status()
            except (CameraTimeout, CameraDisconnected) as exc:
                silent = time.monotonic() - t0
                if self._timeout_s is None or silent >= self._timeout_s:
                    raise CameraLost(
                        self.camera.letter,
                        since=wall,
                        silent_s=silent,
                        timeout_s=self._timeout_s or 0.0,
                        last_error=f"no answer to a status request: {exc}",
                    ) from exc
                log.warning("station: camera %s does not answer (%s)", self.camera.id, exc)
                await anyio.sleep(self.poll_s or 1.0)

    async def _operator_darks(self) -> None:
        done, self._darks_wanted = self._darks_wanted, None
        try:
            self.phase = "dark sequence (operator)"
            run = await self._calibrate("operator", kinds=("dark",))
            if run.masters.made:
                span = run.lstseqs
                assert span is not None  # a master is made from frames
                first, last = span
                self._darks_reply = (
                    f"took {len(run.frames['dark'])} darks (lstseq {first}..{last}): "
                    f"master {Path(run.masters.dark or '').name} is first in the dark table; "
                    "tonight's reduction keeps its master"
                )
            else:
                self._darks_reply = (
                    f"took {len(run.frames['dark'])} darks, too few for a master dark"
                )
            if self.report is not None:
                self.report.calibrations.append(run)
        except Exception as exc:  # reported to the operator; the science goes on
            log.exception("the operator's dark sequence failed")
            self._darks_reply = f"take darks failed: {exc}"
        finally:
            assert done is not None
            done.set()

    async def _calibrate(
        self, when: str, *, first: int | None = None, kinds: tuple[str, ...] = KINDS
    ) -> CalibrationRun:
        """Take a calibration sequence and make its masters."""
        assert self.night_dir is not None
        cal = self.config.reduction.calibration
        frames: dict[str, list[Path]] = {}
        for kind in kinds:
            count = int(getattr(cal, f"n_{kind}"))
            if self.stop.is_set():
                break
            self.phase = f"{when} calibration: {count} {kind} frames"
            got: list[Path] = []
            frames[kind] = got
            source = live_frames(
                self.driver,
                self.night_dir / "raw",
                camera=self.camera.letter,
                site=self.camera.site.name,
                sensor=self.sensor,
                first_lstseq=first,
                count=count,
                stop=self.stop,
                imagetyp=kind,
                lead_slots=self.lead_slots,
                poll_s=self.poll_s,
                camera_timeout_s=self._timeout_s,
            )
            try:
                async with aclosing(source) as sequence:
                    async for frame in sequence:
                        got.append(frame.path)
            except CameraLost as exc:
                log.info("station: %s calibration: %d %s frames", when, len(got), kind)
                self._lose(exc)
                break
            first = None  # the next kind is armed right after this one
            log.info("station: %s calibration: %d %s frames", when, len(got), kind)
        self.phase = f"{when} calibration: making masters"
        try:
            masters = await anyio.to_thread.run_sync(
                partial(
                    make_masters,
                    **frames,
                    camera=self.camera,
                    calibration=cal,
                    binned_dir=binned_dir(self.night_dir),
                    state_dir=self.state_dir,
                )
            )
        except CalibrationError as exc:
            log.error("station: the %s masters could not be made: %s", when, exc)
            masters = Masters(None, None, None, (), (f"{when} masters failed: {exc}",))
        for note in masters.notes:
            log.info("station: %s", note)
        return CalibrationRun(when, frames, masters)
