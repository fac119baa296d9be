"""The console's side of the control socket: the station as its events and status tell it.

:class:`StationLink` holds one connection (:class:`~mascara_actors.control.ControlClient`)
to a running station and keeps, per camera, a :class:`RemoteCamera`: the station's latest
answer to ``status`` (asked every ``poll_s``: the counters of the whole night, whenever the
console attached) and the events heard since it attached (applied to a
:class:`~mascara_actors.night_state.NightState`: latencies, warnings, the stars of each
frame for the sparkline). The console draws from it on its redraw timer; it sends commands
through :meth:`StationLink.command`. Nothing here touches the station's processes or files:
closing the console closes the connection, and the station goes on.
"""

from __future__ import annotations

import logging
import math
import shutil
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio

from mascara_actors.config import CameraConfig
from mascara_actors.control import CommandName, ControlClient, ControlError, Dropped, EventNotice
from mascara_actors.messages import FrameReducedEvent
from mascara_actors.night_state import NightState
from mascara_actors.sidereal import lstseq2date
from tui.feed import Sky, clock_fields
from tui.messages import Snapshot

__all__ = ["RemoteCamera", "StationLink"]

log = logging.getLogger(__name__)

SPARK_FRAMES = 60
"""Frames the sparkline of a camera panel covers (stars measured per frame)."""


@dataclass
class RemoteCamera:
    """One camera of the station, as the console knows it."""

    id: str
    config: CameraConfig | None
    """The camera in the console's configuration (None: not in it; no sky values then)."""
    status: dict[str, Any] = field(default_factory=dict)
    """The station's latest ``status`` of this camera (``docs/control-socket.md``)."""
    state: NightState = field(default_factory=NightState)
    """The events heard since the console attached."""
    stars: deque[int] = field(default_factory=lambda: deque(maxlen=SPARK_FRAMES))
    """Stars measured on each frame reduced since the console attached, oldest first."""

    def count(self, key: str) -> int:
        """A counter of the status (0 while unknown)."""
        value = self.status.get(key)
        return int(value) if isinstance(value, int | float) and math.isfinite(value) else 0

    def number(self, key: str) -> float:
        """A number of the status (NaN while unknown)."""
        value = self.status.get(key)
        return float(value) if isinstance(value, int | float) else float("nan")

    @property
    def paused(self) -> bool:
        return bool(self.status.get("paused"))

    @property
    def phase(self) -> str:
        return str(self.status.get("phase") or "waiting for the station")

    @property
    def process_state(self) -> str:
        process = self.status.get("process") or {}
        return str(process.get("state") or "")

    @property
    def link_lost(self) -> bool:
        """The station says the camera does not answer."""
        return (self.status.get("link") or {}).get("answering") is False

    @property
    def link(self) -> str:
        """The camera link in a few words."""
        detail = (self.status.get("link") or {}).get("detail") or ""
        if self.link_lost:
            return f"NOT ANSWERING {detail}".strip()
        return str(detail or "--")

    @property
    def night_dir(self) -> Path | None:
        where = self.status.get("night_dir")
        return Path(where) if where else None

    def free_space(self) -> float:
        """Free bytes on the disk of the camera's night (a system call: in a thread)."""
        where = self.night_dir
        try:
            return float(shutil.disk_usage(where if where and where.exists() else Path.cwd()).free)
        except OSError:
            return math.nan

    def clock(self) -> datetime:
        """The camera's time as far as the console knows it: the start of the slot of its
        latest frame (a simulated camera's clock may run faster than the wall), else now."""
        lstseq = self.status.get("lstseq")
        if isinstance(lstseq, int):
            when: datetime = lstseq2date(lstseq, format="calendar")
            return when if when.tzinfo else when.replace(tzinfo=UTC)
        return datetime.now(UTC)

    def snapshot(self, sky: Sky | None, *, free_bytes: float) -> Snapshot:
        """What the detailed view of this camera draws: the night's counters from the
        status, latencies and problems from the events heard since attaching."""
        s = self.state
        problems = list(s.problems)
        last_error = self.status.get("last_error")
        if last_error and not any(p[3] == last_error for p in problems):
            problems.insert(0, (math.nan, "error", None, str(last_error)))
        site = self.config.site.name if self.config is not None else ""
        return Snapshot(
            site=site,
            camera=self.id,
            night=str(self.status.get("night") or ""),
            **clock_fields(sky, self.clock()),
            frames_reduced=self.count("frames_reduced"),
            frames_failed=self.count("frames_failed"),
            frames_expected=self.count("frames_expected"),
            rate_hz=s.rate(),
            last_lstseq=self.status.get("lstseq"),
            last_latency_s=self.number("latency_s"),
            last_nstars=self.count("stars"),
            last_nflagged=self.count("stars_flagged"),
            astrometry_dr=self.number("residual_px"),
            aflag=self.count("aflag"),
            ccdtemp=self.number("ccdtemp_c"),
            disk_free_gb=free_bytes / 1e9,
            spooled=self.count("spooled"),
            queue_depths=dict(self.status.get("queue_depths") or {}),
            latencies=tuple(s.latencies),
            problems=tuple(problems),
            paused=self.paused,
            stopping=self.process_state == "stopping",
            finished=self.process_state in ("done", "stopped"),
            fatal=self.status.get("fatal"),
            latest_frame=Path(s.last_frame) if s.last_frame else None,
            phase=self.phase,
            camera_link=self.link,
            calibration=str(self.status.get("calibration") or s.calibration),
            clouds_setidx=s.clouds_setidx,
            clouds=tuple(s.clouds.items()),
        )


class StationLink:
    """The console's connection to a station; see the module docstring.

    Parameters
    ----------
    socket_path
        The station's control socket.
    configs
        Camera id -> its configuration, for the sky values of the detailed view.
    poll_s
        Seconds between two ``status`` requests.
    """

    def __init__(
        self,
        socket_path: Path,
        configs: dict[str, CameraConfig] | None = None,
        *,
        poll_s: float = 1.0,
    ) -> None:
        self.socket_path = Path(socket_path)
        self.configs = dict(configs or {})
        self.poll_s = poll_s
        self.station: dict[str, Any] = {}
        """The station's own part of the latest status (site, pid, uptime ...)."""
        self.cameras: dict[str, RemoteCamera] = {}
        self.connected = anyio.Event()
        """Set once the first status came."""
        self.lost: str | None = None
        """Why the connection ended, once it has."""
        self.dropped = 0
        """Events the station left out because this console fell behind."""
        self.events = 0
        self.last_event_at = math.nan
        self._client: ControlClient | None = None

    async def run(self) -> None:
        """Connect, then follow the events and poll the status until the connection ends
        (``lost`` says why) or this is cancelled.

        Raises
        ------
        ControlError
            No station listens on the socket (or this user may not use it).
        """
        try:
            async with ControlClient(self.socket_path) as client:
                self._client = client
                await self._poll_once()
                self.connected.set()
                async with anyio.create_task_group() as tg:
                    tg.start_soon(self._poll)
                    await self._follow(client)
                    tg.cancel_scope.cancel()
        finally:
            self._client = None
        if self.lost is None:
            self.lost = "the station closed the connection (its nights are over, or it stopped)"

    async def command(self, cmd: CommandName, camera: str | None = None) -> tuple[bool, str]:
        """Send ``cmd`` (for ``camera``, or the station); ``(ok, what the station said)``."""
        client = self._client
        if client is None:
            return False, f"{cmd}: not connected ({self.lost or 'connecting'})"
        try:
            # a dark sequence answers when it is done: minutes at the real clock
            timeout_s = 3600.0 if cmd == "take_darks" else 30.0
            reply = await client.send(cmd, camera, timeout_s=timeout_s)
        except (ControlError, TimeoutError) as exc:
            return False, f"{cmd}: {exc or 'no answer in time'}"
        if not reply.ok:
            return False, reply.error
        return True, _words(reply.result)

    async def _follow(self, client: ControlClient) -> None:
        async for item in client.events():
            if isinstance(item, Dropped):
                self.dropped += item.count
            elif isinstance(item, EventNotice) and item.camera is not None:
                self._apply(item)

    def _apply(self, item: EventNotice) -> None:
        assert item.camera is not None
        try:
            event = item.to_event()
        except ValueError:  # a kind of a newer station: shown by its status anyway
            return
        camera = self._camera(item.camera)
        camera.state.apply(event)
        if isinstance(event, FrameReducedEvent):
            camera.stars.append(event.nstars - event.nflagged)
        self.events += 1
        self.last_event_at = time.time()

    async def _poll(self) -> None:
        while True:
            await anyio.sleep(self.poll_s)
            await self._poll_once()

    async def _poll_once(self) -> None:
        assert self._client is not None
        reply = await self._client.send("status")
        status = reply.unwrap()
        self.station = dict(status.get("station") or {})
        for cam_id, described in (status.get("cameras") or {}).items():
            self._camera(cam_id).status = dict(described)

    def _camera(self, cam_id: str) -> RemoteCamera:
        camera = self.cameras.get(cam_id)
        if camera is None:
            camera = self.cameras[cam_id] = RemoteCamera(cam_id, self.configs.get(cam_id))
        return camera


def _words(result: object) -> str:
    """A command's result in words (a sentence as it is; per camera one clause each)."""
    if isinstance(result, str):
        return result
    if isinstance(result, dict):
        parts = []
        for key, value in result.items():
            if isinstance(value, dict) and "ok" in value:
                said = value.get("result") if value.get("ok") else f"error: {value.get('error')}"
                parts.append(f"{key}: {_words(said)}")
            else:
                parts.append(f"{key}: {_words(value)}")
        return "; ".join(parts)
    if isinstance(result, list):
        return ", ".join(_words(v) for v in result)
    return str(result)
