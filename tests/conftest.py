"""Fixtures every test shares: the event loop a test runs on, and a guard that fails any test
whose code blocks that loop.

Async tests run on asyncio unless their module (or the test) says otherwise with the
``backends`` mark::

    pytestmark = pytest.mark.backends("asyncio", "trio")   # both
    pytestmark = pytest.mark.backends("trio-autojump")     # trio on a virtual clock

``trio-autojump`` is trio with a fresh :class:`trio.testing.MockClock` per test that jumps
once every task has waited 20 ms of real time (a threshold of 0 makes trio spin while a
worker thread reads a file, and starves it of the GIL; virtual deadlines stay exact).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import anyio
import pytest
import sniffio
import trio.lowlevel
import trio.testing
from blockbuster import BlockBuster, blockbuster_ctx

# before any test module imports numpy, so the tests reduce with the numpy code paths the
# command line takes (mascara_actors/numpy_dispatch.py)
import mascara_actors  # noqa: F401

BACKENDS = ("asyncio", "trio", "trio-autojump")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "anyio_backend" not in metafunc.fixturenames:
        return
    marker = metafunc.definition.get_closest_marker("backends")
    names = marker.args if marker else ("asyncio",)
    unknown = set(names) - set(BACKENDS)
    if unknown:
        raise ValueError(f"unknown backends {sorted(unknown)}; choose from {BACKENDS}")
    metafunc.parametrize("anyio_backend", names, indirect=True)


@pytest.fixture
def anyio_backend(request: pytest.FixtureRequest) -> Any:
    """The backend of this test run (see the module docstring)."""
    if request.param == "trio-autojump":
        return ("trio", {"clock": trio.testing.MockClock(autojump_threshold=0.02)})
    return request.param


def hang_guard(seconds: float) -> contextlib.AbstractContextManager[object]:
    """``anyio.fail_after(seconds)``, but none on a virtual clock: there trio jumps to the
    earliest deadline once every task has waited 20 ms of real time, which a worker thread
    reading a file on a busy machine may take, so it would jump straight to this one
    (pytest-timeout bounds those runs in real time)."""
    if sniffio.current_async_library() == "trio" and isinstance(
        trio.lowlevel.current_clock(), trio.testing.MockClock
    ):
        return contextlib.nullcontext()
    return anyio.fail_after(seconds)


@pytest.fixture(autouse=True)
def blockbuster() -> Iterator[BlockBuster]:
    """Fail a test when code of this project makes a blocking call (file or socket I/O,
    ``time.sleep``, a lock wait) on a running asyncio event loop; such work belongs in a
    worker thread or process. BlockBuster sees asyncio loops only, so the trio runs of the
    same tests are not checked."""
    with blockbuster_ctx(["mascara_actors", "hw", "tui"]) as bb:
        yield bb
