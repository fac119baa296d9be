"""The guard of tests/conftest.py is on: code of this project that blocks a running asyncio
loop fails the test, the same call from a worker thread does not."""

from __future__ import annotations

from pathlib import Path

import anyio.to_thread
import pytest
from blockbuster import BlockingError

from mascara_actors.atomic_files import atomic_write_bytes

pytestmark = pytest.mark.anyio


async def test_a_file_write_of_ours_on_the_loop_fails(tmp_path: Path) -> None:
    with pytest.raises(BlockingError):
        atomic_write_bytes(tmp_path / "x.bin", b"payload")


async def test_the_same_write_in_a_worker_thread_passes(tmp_path: Path) -> None:
    path = await anyio.to_thread.run_sync(atomic_write_bytes, tmp_path / "x.bin", b"payload")
    assert path.read_bytes() == b"payload"
