"""resolvers/batching.Batched: the loads of one window share one call, each caller gets its own
value, a cancelled caller cancels nothing of the others', and a failure reaches every caller."""

from __future__ import annotations

import asyncio

import pytest

from pulseboard.resolvers.batching import Batched


class Doubler:
    def __init__(self) -> None:
        self.calls: list[list[int]] = []
        self.release = asyncio.Event()
        self.release.set()

    async def __call__(self, keys: list[int]) -> list[int]:
        self.calls.append(keys)
        await self.release.wait()
        return [2 * key for key in keys]


async def test_idle_loads_of_one_tick_share_one_call_and_each_gets_its_value() -> None:
    doubler = Doubler()
    batched = Batched(doubler, window=0.05)
    assert await asyncio.gather(*(batched.load(key) for key in (1, 2, 2))) == [2, 4, 4]
    assert doubler.calls == [[1, 2, 2]]


async def test_in_a_burst_loads_collect_for_the_window() -> None:
    doubler = Doubler()
    batched = Batched(doubler, window=0.05)
    assert await batched.load(1) == 2  # idle: at once
    second = batched.load(2)  # within the window of the last call: a burst
    await asyncio.sleep(0.01)
    assert doubler.calls == [[1]]  # still collecting
    third = batched.load(3)
    assert await asyncio.gather(second, third) == [4, 6]
    assert doubler.calls == [[1], [2, 3]] and batched.batches == 2
    await asyncio.sleep(0.06)  # past the window: idle again
    assert await batched.load(4) == 8
    assert doubler.calls[2:] == [[4]]


async def test_a_cancelled_caller_cancels_nothing_of_the_others() -> None:
    doubler = Doubler()
    doubler.release.clear()
    batched = Batched(doubler, window=0.001)
    victim = asyncio.ensure_future(batched.load(1))
    leaving = asyncio.ensure_future(batched.load(2))
    await asyncio.sleep(0.01)  # dispatched: the call is under way
    leaving.cancel()
    await asyncio.sleep(0)
    doubler.release.set()
    assert await victim == 2
    assert leaving.cancelled()


async def test_callers_cancelled_before_the_window_ends_are_not_loaded() -> None:
    doubler = Doubler()
    batched = Batched(doubler, window=0.05)
    await batched.load(0)  # a burst: the next loads collect for the window
    gone = asyncio.ensure_future(batched.load(1))
    kept = batched.load(2)
    await asyncio.sleep(0.01)
    gone.cancel()
    assert await kept == 4
    assert doubler.calls == [[0], [2]]


async def test_a_failure_reaches_every_caller_of_the_batch_and_the_next_batch_is_fresh() -> None:
    failing = True

    async def load(keys: list[int]) -> list[int]:
        if failing:
            raise ConnectionError("database down")
        return keys

    batched = Batched(load, window=0.001)
    results = await asyncio.gather(batched.load(1), batched.load(2), return_exceptions=True)
    assert [type(result) for result in results] == [ConnectionError, ConnectionError]
    failing = False
    assert await batched.load(3) == 3


async def test_a_load_fn_returning_the_wrong_number_of_values_fails_its_callers() -> None:
    async def load(keys: list[int]) -> list[int]:
        return keys[:1]

    batched = Batched(load, window=0.001)
    with pytest.raises(RuntimeError, match="2 keys loaded 1 values"):
        await asyncio.gather(batched.load(1), batched.load(2))


def test_a_batch_left_pending_by_a_closed_loop_does_not_block_the_next_loop() -> None:
    doubler = Doubler()
    batched = Batched(doubler, window=0.5)

    async def abandon() -> None:
        batched.load(1)  # the loop closes before its window ends

    async def load() -> int:
        return await batched.load(2)

    asyncio.run(abandon())
    assert asyncio.run(load()) == 4
    assert doubler.calls == [[2]]


async def test_a_full_batch_goes_at_once_and_the_rest_in_the_next() -> None:
    doubler = Doubler()
    batched = Batched(doubler, window=0.05, max_size=3)
    await batched.load(0)  # a burst: loads would collect for the whole window
    loads = [batched.load(key) for key in range(1, 6)]
    await asyncio.sleep(0.01)
    assert doubler.calls == [[0], [1, 2, 3]]  # the full one did not wait for the window
    assert await asyncio.gather(*loads) == [2, 4, 6, 8, 10]
    assert doubler.calls[2:] == [[4, 5]]
