"""Tolerant reading of a night's event log (``logs/events.jsonl``).

The log is appended while the night runs and may be cut by a crash: a torn last line, a
line of an event kind this version does not know, or a line with missing fields must not
stop the summary. Such lines are counted and skipped.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from mascara_actors import messages as ev

__all__ = ["EventLog", "read_event_log"]

log = logging.getLogger(__name__)

E = TypeVar("E", bound=ev.Event)


@dataclass(frozen=True, slots=True, kw_only=True)
class EventLog:
    """The events of one log file, in file order, and what could not be read."""

    path: Path
    events: tuple[ev.Event, ...] = ()
    lines: int = 0
    """Non-blank lines in the file."""
    bad_lines: int = 0
    """Lines that are not valid JSON objects or miss fields of their kind (torn lines)."""
    unknown_kinds: dict[str, int] = field(default_factory=dict)
    """Event kinds this version does not know, with their counts (skipped)."""
    missing: bool = False
    """True when the file does not exist (a night that never started its summariser)."""

    def of(self, cls: type[E]) -> list[E]:
        """The events of one type, in file order."""
        return [e for e in self.events if isinstance(e, cls)]


def read_event_log(path: str | Path) -> EventLog:
    """Read ``events.jsonl``, skipping and counting unreadable lines.

    Parameters
    ----------
    path : path-like
        The event log of a camera-night.

    Returns
    -------
    EventLog
        Empty (``missing=True``) when the file does not exist. Never raises for bad content;
        an unreadable file (permissions) is logged and treated as missing.
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return EventLog(path=path, missing=True)
    except OSError as exc:
        log.warning("cannot read event log %s (%s): summary made without it", path, exc)
        return EventLog(path=path, missing=True)
    events: list[ev.Event] = []
    unknown: Counter[str] = Counter()
    lines = bad = 0
    for line in raw.decode("utf-8", errors="replace").splitlines():
        if not line.strip():
            continue
        lines += 1
        try:
            data = json.loads(line)
        except json.JSONDecodeError:
            bad += 1
            continue
        if not isinstance(data, dict) or not isinstance(data.get("kind"), str):
            bad += 1
            continue
        try:
            events.append(ev.from_json(line))
        except ValueError:
            # from_json raises ValueError only for an unknown kind (JSON was valid above)
            unknown[data["kind"]] += 1
        except TypeError:
            # a known kind with missing or extra fields: a line from another version
            bad += 1
    if bad or unknown:
        log.info("event log %s: %d lines, %d unreadable, unknown kinds %s",
                 path, lines, bad, dict(unknown))
    return EventLog(path=path, events=tuple(events), lines=lines, bad_lines=bad,
                    unknown_kinds=dict(unknown))
