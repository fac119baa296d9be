"""The camera edge (spool.py): never blocks, loses nothing, keeps order (issue 6)."""

from __future__ import annotations

import inspect

import anyio
import anyio.lowlevel
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mascara_actors.actors.spool import Spool

pytestmark = [pytest.mark.anyio, pytest.mark.backends("asyncio", "trio")]


def checkpoint_counts(max_size: int = 60) -> st.SearchStrategy[list[tuple[int, int]]]:
    """Per item: checkpoints the camera waits before putting it, and checkpoints the
    consumer spends on it after receiving it (0 = back to back; 3 = slow)."""
    return st.lists(st.tuples(st.integers(0, 3), st.integers(0, 3)), min_size=1, max_size=max_size)


def capacities() -> st.SearchStrategy[int]:
    """Sizes of the bounded stream behind the spool, as in config (frames = 8) and smaller."""
    return st.sampled_from([1, 2, 3, 8])


async def _checkpoints(n: int) -> None:
    for _ in range(n):
        await anyio.lowlevel.checkpoint()


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(schedule=checkpoint_counts(), capacity=capacities())
async def test_any_interleaving_is_fifo_and_lossless(
    anyio_backend, schedule: list[tuple[int, int]], capacity: int
) -> None:
    send, receive = anyio.create_memory_object_stream[int](capacity)
    spool = Spool(send)
    received: list[int] = []
    expected_spooled = 0

    async def camera() -> None:
        nonlocal expected_spooled
        for item, (gap, _) in enumerate(schedule):
            await _checkpoints(gap)
            before = spool.statistics()
            if before.waiting or before.buffer_used >= capacity:
                expected_spooled += 1
            spool.put(item)
            after = spool.statistics()
            assert after.spooled == expected_spooled
            assert after.waiting == after.spooled - after.caught_up
            assert after.buffer_used <= capacity
        await spool.aclose()

    async def reducer() -> None:
        async with receive:
            async for item in receive:
                received.append(item)
                await _checkpoints(schedule[item][1])

    async with anyio.create_task_group() as tg:
        tg.start_soon(spool.feed)
        tg.start_soon(reducer)
        tg.start_soon(camera)

    assert received == list(range(len(schedule)))
    final = spool.statistics()
    assert final.spooled == expected_spooled
    assert final.caught_up == final.spooled
    assert final.waiting == 0


async def test_put_never_awaits_even_when_nobody_reads(anyio_backend) -> None:
    assert not inspect.iscoroutinefunction(Spool.put)
    send, receive = anyio.create_memory_object_stream[int](4)
    spool = Spool(send)
    # In a cancelled scope any checkpoint raises: 100 puts with no reader go through.
    with anyio.CancelScope() as scope:
        scope.cancel()
        for item in range(100):
            spool.put(item)
    assert not scope.cancelled_caught
    stats = spool.statistics()
    assert (stats.buffer_used, stats.waiting, stats.spooled) == (4, 96, 96)
    async with anyio.create_task_group() as tg:
        tg.start_soon(spool.feed)
        await spool.aclose()
        async with receive:
            assert [item async for item in receive] == list(range(100))
    assert spool.caught_up == 96


async def test_send_waits_and_put_after_close_is_refused(anyio_backend) -> None:
    send, receive = anyio.create_memory_object_stream[int](1)
    spool = Spool(send)
    await spool.send(0)
    with anyio.move_on_after(0.05) as scope:
        await spool.send(1)  # a fast replay waits for the reducer: nothing spooled
    assert scope.cancelled_caught
    assert spool.spooled == 0
    await spool.aclose()
    with pytest.raises(anyio.ClosedResourceError, match="closing"):
        spool.put(2)
    async with anyio.create_task_group() as tg:
        tg.start_soon(spool.feed)
        async with receive:
            assert [item async for item in receive] == [0]
