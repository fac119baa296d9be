"""The live frame source: a camera's frames into the raw archive, as ``FrameReady`` messages.

:func:`live_frames` makes the camera actor's source for a real (or simulated) camera, a
:class:`~hw.source.FrameSource` like :func:`hw.recorded.paced_frames` for recorded nights: a
:class:`LiveFrames`, which

1. checks that the camera is the configured one (letter and full readout shape);
2. starts the readout stream and arms the camera ahead of its clock
   (:meth:`~hw.driver.CameraDriver.arm_next`, or from a given first slot), aborting a
   sequence left armed by an earlier host;
3. for each verified frame from the readout link builds the raw header
   (:func:`raw_header`), writes the frame into the archive (the spool) in a worker thread,
   and yields ``FrameReady(path, lstseq, arrived)``.

Bad input never travels on: frames the readout link drops (corrupt, short, cut off) never
reach this package; the slots they leave out are logged, counted as ``missing`` and handed to
``on_gap`` with the reason (the station turns them into warning events). Frames of the wrong
shape are counted as ``rejected``, frames of slots before the first one or already seen as
``stale``. A raw file is never overwritten: a frame whose file already exists is left out
(the file on disk is kept, counted as ``existing``, with a warning). A control link that drops
is reconnected by the driver; while no frame comes, the camera is polled every ``poll_s``
seconds and re-armed if it has lost its sequence (a power cycle). The source owns its
counters: :attr:`LiveFrames.stats` is a :class:`LiveStats` snapshot of them (a caller that
wants them keeps the source).

A camera that stays away is given up after ``camera_timeout_s`` real seconds without a sign
of it (no reply to a poll and no frame while one is due, or no frame although it answers):
:class:`CameraLost` is raised, saying since when and the last error, and the camera is left
as it is (no clean-up commands are sent to it).

Setting ``stop`` ends the source: no new frame is waited for; frames already read out (in
the driver's buffer) and the one being written are written and yielded; then the armed
exposures are aborted and the readout stopped. A consumer that stops iterating early should
close the source (``contextlib.aclosing``) so this clean-up runs at once.

One concept a module:

* :mod:`hw.live.source`: :func:`live_frames` and :class:`LiveFrames`, the source itself
  (waiting for frames, polling, ``stop``, the clean-up);
* :mod:`hw.live.sequence`: the camera side (identity, readout, arming, polls, re-arms,
  release);
* :mod:`hw.live.slots`: which slot is due, stale frames, gaps, the end of a run;
* :mod:`hw.live.archive`: :func:`raw_header` and the raw archive (checks, never overwrite,
  write failures);
* :mod:`hw.live.watchdog`: the camera's signs of life and :class:`CameraLost`;
* :mod:`hw.live.stats`: :class:`LiveStats`.
"""

from hw.live.archive import raw_header
from hw.live.sequence import MAX_ARM
from hw.live.slots import GapReport
from hw.live.source import LiveFrames, live_frames
from hw.live.stats import LiveStats
from hw.live.watchdog import CameraLost

__all__ = [
    "MAX_ARM",
    "CameraLost",
    "GapReport",
    "LiveFrames",
    "LiveStats",
    "live_frames",
    "raw_header",
]
