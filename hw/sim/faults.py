"""Faults the simulated camera injects on request: what a flaky camera and link do.

Faults are armed from :attr:`DeviceConfig.faults <hw.sim.device_config.DeviceConfig>` at
start-up or by the hidden command ``FAULT,<name>[,<value>]`` (armed after that command's own
reply). Most are counts: the next ``value`` (default 1) occasions suffer it. Two take real
seconds instead: ``mute`` and ``vanish``.

Reply faults (control line): ``garbage`` (junk bytes before the next reply), ``badcrc``
(next reply with a wrong checksum), ``dropreply`` (next reply not sent), ``mute`` (ignore
commands for ``value`` real seconds), ``vanish`` (close the pty, come back after ``value``
real seconds on the same path). Frame faults (readout link): ``shortframe`` (next frame cut
short, the stream goes on), ``corruptframe`` (next frame's payload damaged), ``cutlink``
(next frame cut short and the connection closed). ``clear`` cancels what is pending.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Mapping

__all__ = ["FAULTS", "FaultInjector"]

log = logging.getLogger(__name__)

FAULTS = frozenset(
    {
        "garbage",
        "badcrc",
        "dropreply",
        "mute",
        "vanish",
        "shortframe",
        "corruptframe",
        "cutlink",
        "clear",
    }
)
"""Every fault name (see the module docstring)."""

_JUNK = bytes(b for b in range(256) if b not in b"$\n")


class FaultInjector:
    """The faults pending on one device.

    Parameters
    ----------
    armed
        Faults to arm at once, name to count (or real seconds for ``mute``/``vanish``).
    seed
        Seed of the junk bytes of ``garbage``.
    """

    def __init__(self, armed: Mapping[str, float], *, seed: int) -> None:
        self._counts: dict[str, int] = {}
        self._deferred: list[tuple[str, float | None]] = []
        self._rng = random.Random(seed)
        self.mute_until = 0.0
        """Monotonic time until which commands are ignored."""
        self.vanish_s: float | None = None
        """Real seconds the pty is to stay away, once closed; None: no vanish pending."""
        for name, value in armed.items():
            self.arm(name, value)

    def arm(self, name: str, value: float | None = None) -> None:
        """Arm fault ``name`` now (``value``: count, or seconds; default 1)."""
        if name == "clear":
            self._counts.clear()
            self.mute_until = 0.0
        elif name == "mute":
            self.mute_until = time.monotonic() + (1.0 if value is None else float(value))
        elif name == "vanish":
            self.vanish_s = 1.0 if value is None else float(value)
        else:
            self._counts[name] = self._counts.get(name, 0) + (1 if value is None else int(value))

    def defer(self, name: str, value: float | None) -> None:
        """Arm ``name`` at the next :meth:`arm_deferred` (after the reply that asked for it)."""
        self._deferred.append((name, value))

    def arm_deferred(self) -> None:
        """Arm the faults deferred so far."""
        deferred, self._deferred = self._deferred, []
        for name, value in deferred:
            self.arm(name, value)

    def take(self, name: str) -> bool:
        """True (and one count used) if fault ``name`` is pending."""
        n = self._counts.get(name, 0)
        if n > 0:
            self._counts[name] = n - 1
            log.info("fault injected: %s", name)
            return True
        return False

    def muted(self) -> bool:
        """True while the device ignores commands."""
        return time.monotonic() < self.mute_until

    def take_vanish(self) -> float | None:
        """Seconds of a pending ``vanish`` (and clear it), or None."""
        down_s, self.vanish_s = self.vanish_s, None
        return down_s

    def damage_reply(self, data: bytes) -> bytes | None:
        """A reply as the pending reply faults leave it; None when it is to be dropped."""
        if self.take("dropreply"):
            return None
        if self.take("badcrc"):
            star = data.rindex(b"*")
            bad = b"0" if data[star + 1 : star + 2] != b"0" else b"1"
            data = data[: star + 1] + bad + data[star + 2 :]
        if self.take("garbage"):
            junk = bytes(self._rng.choice(_JUNK) for _ in range(self._rng.randrange(8, 64)))
            data = junk + b"$" + junk[:5] + data  # noise, then a line cut off by the reply
        return data
