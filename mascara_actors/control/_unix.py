"""The owner-only Unix socket under the control server: binding it safely, replacing a stale
one, telling who is on the other end. Everything here blocks; the server runs it in a worker
thread.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
import socket
import stat
import struct
from dataclasses import dataclass
from pathlib import Path

from mascara_actors.control.errors import ControlError, SocketInUse

__all__ = [
    "BoundSocket",
    "PeerCredentials",
    "bind_owner_only",
    "owner_only_directory",
    "peer_credentials",
    "release",
]

log = logging.getLogger(__name__)

SOCKET_PATH_MAX_BYTES = 107
"""Longest path a Unix socket may have on Linux (``sun_path`` holds 108 bytes with a NUL)."""

_PROBE_TIMEOUT_S = 1.0
"""How long the check for a live server at the path waits, seconds."""


@dataclass(frozen=True, slots=True)
class PeerCredentials:
    """Who is at the other end of a connection (``SO_PEERCRED``, at the time it connected)."""

    pid: int
    uid: int
    gid: int

    def __str__(self) -> str:
        return f"pid {self.pid} uid {self.uid}"


def peer_credentials(sock: socket.socket) -> PeerCredentials | None:
    """The peer's process, user and group; None where the platform cannot tell (not Linux)."""
    option = getattr(socket, "SO_PEERCRED", None)
    if option is None:
        return None
    size = struct.calcsize("3i")
    pid, uid, gid = struct.unpack("3i", sock.getsockopt(socket.SOL_SOCKET, option, size))
    return PeerCredentials(pid=pid, uid=uid, gid=gid)


@dataclass(frozen=True, slots=True)
class BoundSocket:
    """A listening socket at ``path``, with the lock that makes it this process's."""

    sock: socket.socket
    path: Path
    lock_fd: int
    """Open ``<path>.lock``, flock-ed for as long as the server runs."""
    inode: tuple[int, int]
    """(device, inode) of the socket file, so that only our own file is removed."""


def owner_only_directory(directory: Path) -> None:
    """Make ``directory`` (and its parents) exist, owned by us with mode 0700.

    Raises
    ------
    ControlError
        ``directory`` is a symbolic link (never followed: whoever can change the link would
        choose where the socket goes and which directory is made 0700), not a directory, or
        another user's; or its mode cannot be set.
    """
    with contextlib.suppress(FileExistsError):  # checked below, without following a link
        directory.mkdir(mode=0o700, parents=True)
    uid = os.geteuid()
    info = os.lstat(directory)
    if not stat.S_ISDIR(info.st_mode):
        what = "a symbolic link" if stat.S_ISLNK(info.st_mode) else "not a directory"
        raise ControlError(
            f"the control socket's directory {directory} is {what}: the station does not "
            "follow it; make it a real directory of the station's user, or give the station "
            "another state directory"
        )
    owner = info.st_uid
    if owner != uid:
        raise ControlError(
            f"the control socket's directory {directory} belongs to uid {owner}, not to this "
            f"station's uid {uid}: give the station a state directory of its own"
        )
    os.chmod(directory, 0o700)
    info = os.lstat(directory)
    if info.st_uid != uid or stat.S_IMODE(info.st_mode) != 0o700:
        raise ControlError(
            f"the control socket's directory {directory} has mode "
            f"{stat.S_IMODE(info.st_mode):04o} after chmod, not 0700: check the file system "
            "(it must support Unix permissions)"
        )


def _lock(path: Path) -> int:
    """Take ``<path>.lock`` (flock, released when this process dies); SocketInUse if held."""
    lock_path = path.with_name(path.name + ".lock")
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise SocketInUse(
            f"another station holds {lock_path} and listens on {path}: stop it first "
            "(the console's stop, or SIGTERM), or give this one another state directory"
        ) from None
    except BaseException:
        os.close(fd)
        raise
    return fd


def _clear_stale(path: Path) -> None:
    """Remove a socket file nobody listens on; SocketInUse when someone does."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(info.st_mode):
        raise ControlError(
            f"{path} exists and is not a socket: move it away, or give the station another "
            "state directory"
        )
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(_PROBE_TIMEOUT_S)
    try:
        probe.connect(os.fspath(path))
    except (ConnectionRefusedError, FileNotFoundError):
        log.warning("control: replacing the stale socket %s (nobody listens on it)", path)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        return
    except OSError as exc:
        raise ControlError(f"cannot check whether a station listens on {path}: {exc}") from exc
    finally:
        probe.close()
    raise SocketInUse(
        f"a process already listens on {path}: stop that station first, or give this one "
        "another state directory"
    )


def _bind(path: Path, backlog: int) -> socket.socket:
    """Bind and listen at ``path``, mode 0600 from its creation on."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        old_umask = os.umask(0o177)  # process-wide, for the instant of bind: created as 0600
        try:
            sock.bind(os.fspath(path))
        finally:
            os.umask(old_umask)
        # at once: a client that finds the file connects (between bind and listen it would
        # be refused, and told the socket is a dead station's); 0600 from the bind on
        sock.listen(backlog)
        os.chmod(path, 0o600)
        info = os.lstat(path)
        mode = stat.S_IMODE(info.st_mode)
        if not stat.S_ISSOCK(info.st_mode) or mode != 0o600 or info.st_uid != os.geteuid():
            raise ControlError(
                f"the control socket {path} has mode {mode:04o} and owner uid {info.st_uid} "
                f"after chmod, not 0600 and uid {os.geteuid()}: check the file system "
                "(it must support Unix permissions)"
            )
    except BaseException:
        sock.close()
        raise
    return sock


def bind_owner_only(path: Path, *, backlog: int = 128) -> BoundSocket:
    """Listen on ``path``: its directory made 0700, the socket 0600, a stale socket replaced.

    Raises
    ------
    SocketInUse
        Another server holds the path's lock or listens on it.
    ControlError
        The path is too long for a Unix socket, is not a socket, or its directory or the
        socket cannot be made owner-only.
    """
    size = len(os.fsencode(path))
    if size > SOCKET_PATH_MAX_BYTES:
        raise ControlError(
            f"the control socket path {path} is {size} bytes long; Unix sockets allow "
            f"{SOCKET_PATH_MAX_BYTES}: give the station a shorter state directory"
        )
    owner_only_directory(path.parent)
    lock_fd = _lock(path)
    try:
        _clear_stale(path)
        try:
            sock = _bind(path, backlog)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise SocketInUse(f"{path} appeared while this station started: {exc}") from exc
            raise
        info = os.lstat(path)
    except BaseException:
        os.close(lock_fd)
        raise
    return BoundSocket(sock=sock, path=path, lock_fd=lock_fd, inode=(info.st_dev, info.st_ino))


def release(bound: BoundSocket) -> None:
    """Remove the socket file (if it is still ours) and release the lock."""
    try:
        info = os.lstat(bound.path)
        if (info.st_dev, info.st_ino) == bound.inode:
            os.unlink(bound.path)
    except FileNotFoundError:
        pass
    finally:
        os.close(bound.lock_fd)
