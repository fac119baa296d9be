"""The exceptions of the control socket.

All derive from :class:`ControlError`, itself a :class:`~mascara_actors.errors.MascaraError`,
so the station's error handling treats them like the package's other errors. Each message
says what to do.

- :class:`ProtocolError`: a line that breaks the wire format (the client's fault).
- :class:`UnknownCamera`: a command named a camera the station does not have; raised by the
  command handler, turned into an error reply by the server.
- :class:`SocketInUse`: another station already listens on the socket path.
- :class:`CommandFailed`: the station answered a command with an error (client side).
- :class:`Disconnected`: the connection ended before the reply came (client side).
- :class:`ForeignListener`: the process listening at the socket path is another user's
  (client side).
"""

from __future__ import annotations

from collections.abc import Iterable

from mascara_actors.errors import MascaraError

__all__ = [
    "CommandFailed",
    "ControlError",
    "Disconnected",
    "ForeignListener",
    "ProtocolError",
    "SocketInUse",
    "UnknownCamera",
]


class ControlError(MascaraError):
    """Root of the control socket's errors (setting up the socket, talking over it)."""


class ProtocolError(ControlError, ValueError):
    """A line does not follow the wire format of :mod:`mascara_actors.control.protocol`.

    ``request_id`` is the line's ``"id"`` when it could be read (the error reply carries
    it), else None.
    """

    def __init__(self, message: str, *, request_id: int | str | None = None) -> None:
        super().__init__(message)
        self.request_id = request_id


class UnknownCamera(ControlError):
    """A command named a camera that is not part of this station.

    Raise it from a command handler; the client gets the message as its error reply.
    """

    def __init__(self, camera: str, cameras: Iterable[str]) -> None:
        known = ", ".join(sorted(cameras)) or "none"
        super().__init__(
            f"no camera {camera!r} at this station (cameras: {known}); "
            'name one of them, or leave "camera" out for the whole station'
        )
        self.camera = camera


class SocketInUse(ControlError):
    """Another station already listens on this control socket: stop it first, or give
    this one another state directory."""


class CommandFailed(ControlError):
    """The station answered a command with an error; the message is the station's."""


class Disconnected(ControlError):
    """The control connection ended (the station stopped or closed it) before a reply."""


class ForeignListener(ControlError):
    """The process listening at the control socket's path runs as another user: nothing is
    sent to it (client side)."""
