"""The station's control socket: an owner-only Unix domain socket carrying newline-delimited
JSON, through which consoles read the station's events and send it commands.

- :class:`ControlServer`: serves the socket; :meth:`ControlServer.publish` never waits for
  a client; commands go to a :class:`ControlHandler`.
- :class:`ControlClient`: connects, sends commands, iterates the events.
- :mod:`.protocol`: the wire format (:class:`Command`, :class:`Reply`,
  :class:`EventNotice`, :class:`Dropped`, the encode and decode functions).
- :mod:`.errors`: :class:`ControlError` and its leaves.
- :func:`owner_only_directory`: the check the server makes of its state directory (a real
  directory of this user, mode 0700), for whoever puts other files there first.

This package sits at the science level: it imports :mod:`mascara_actors.messages` and
nothing of the actors, the application layer, ``hw`` or ``tui``. See
``docs/control-socket.md``.
"""

from mascara_actors.control._unix import owner_only_directory as owner_only_directory
from mascara_actors.control.client import ControlClient as ControlClient
from mascara_actors.control.errors import CommandFailed as CommandFailed
from mascara_actors.control.errors import ControlError as ControlError
from mascara_actors.control.errors import Disconnected as Disconnected
from mascara_actors.control.errors import ForeignListener as ForeignListener
from mascara_actors.control.errors import ProtocolError as ProtocolError
from mascara_actors.control.errors import SocketInUse as SocketInUse
from mascara_actors.control.errors import UnknownCamera as UnknownCamera
from mascara_actors.control.protocol import COMMANDS as COMMANDS
from mascara_actors.control.protocol import MAX_LINE_BYTES as MAX_LINE_BYTES
from mascara_actors.control.protocol import Command as Command
from mascara_actors.control.protocol import CommandName as CommandName
from mascara_actors.control.protocol import Dropped as Dropped
from mascara_actors.control.protocol import EventNotice as EventNotice
from mascara_actors.control.protocol import Reply as Reply
from mascara_actors.control.server import ControlHandler as ControlHandler
from mascara_actors.control.server import ControlServer as ControlServer
from mascara_actors.control.server import ControlStatistics as ControlStatistics

__all__ = [
    "COMMANDS",
    "MAX_LINE_BYTES",
    "Command",
    "CommandFailed",
    "CommandName",
    "ControlClient",
    "ControlError",
    "ControlHandler",
    "ControlServer",
    "ControlStatistics",
    "Disconnected",
    "Dropped",
    "EventNotice",
    "ForeignListener",
    "ProtocolError",
    "Reply",
    "SocketInUse",
    "UnknownCamera",
    "owner_only_directory",
]
