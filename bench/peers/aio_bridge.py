"""The asyncio bridge (microthreads.aio) against pure asyncio doing the same.

    python -m bench.peers.aio_bridge asyncio|uvloop|microthreads [--target S]

prints one JSON object: ``await_done_ns``, a task (or a tasklet through
``aio.await_``) awaiting an already-completed future; ``pingpong_ns``, one
round trip between two parties handing a token back and forth through
futures: two asyncio tasks, or a tasklet and a coroutine.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
from time import perf_counter


def calibrated(measure, target):
    """ns per operation, ``measure(n)`` returning seconds for n operations."""
    measure(100)                                # warm up
    n = 100
    while True:
        elapsed = measure(n)
        if elapsed >= target / 20:
            break
        n *= 10
    if elapsed < target:
        n = max(n, math.ceil(n * target / elapsed))
        elapsed = measure(n)
    return elapsed / n * 1e9


async def pong(loop, box, n):
    """The coroutine side of the ping-pong: wait for box[0], answer in box[1]."""
    for _ in range(n):
        await box[0]
        box[0] = loop.create_future()
        box[1].set_result(None)


# ---- pure asyncio: everything in coroutines

def asyncio_figures(target, new_loop):
    def run(coro):
        loop = new_loop()
        try:
            return loop.run_until_complete(coro)
        finally:
            loop.close()

    def await_done(n):
        async def main():
            future = asyncio.get_running_loop().create_future()
            future.set_result(None)
            started = perf_counter()
            for _ in range(n):
                await future
            return perf_counter() - started
        return run(main())

    def pingpong(n):
        async def main():
            loop = asyncio.get_running_loop()
            box = [loop.create_future(), loop.create_future()]

            task = asyncio.ensure_future(pong(loop, box, n))
            started = perf_counter()
            for _ in range(n):
                box[0].set_result(None)
                await box[1]
                box[1] = loop.create_future()
            elapsed = perf_counter() - started
            await task
            return elapsed
        return run(main())

    return {"await_done_ns": calibrated(await_done, target),
            "pingpong_ns": calibrated(pingpong, target)}


# ---- microthreads.aio: a tasklet on one side

def microthreads_figures(target):
    from microthreads import aio

    def await_done(n):
        def main():
            future = asyncio.get_running_loop().create_future()
            future.set_result(None)
            started = perf_counter()
            for _ in range(n):
                aio.await_(future)
            return perf_counter() - started
        return aio.run(main)

    def pingpong(n):
        def main():
            loop = asyncio.get_running_loop()
            box = [loop.create_future(), loop.create_future()]

            task = asyncio.ensure_future(pong(loop, box, n))   # the coroutine side
            started = perf_counter()
            for _ in range(n):                  # the tasklet side
                box[0].set_result(None)
                aio.await_(box[1])
                box[1] = loop.create_future()
            elapsed = perf_counter() - started
            aio.await_(task)
            return elapsed
        return aio.run(main)

    return {"await_done_ns": calibrated(await_done, target),
            "pingpong_ns": calibrated(pingpong, target)}


def main():
    parser = argparse.ArgumentParser(prog="python -m bench.peers.aio_bridge")
    parser.add_argument("side", choices=["asyncio", "uvloop", "microthreads"])
    parser.add_argument("--target", type=float, default=0.5, help="seconds per figure")
    args = parser.parse_args()
    if args.side == "microthreads":
        figures = microthreads_figures(args.target)
    elif args.side == "uvloop":
        import uvloop
        figures = asyncio_figures(args.target, uvloop.new_event_loop)
    else:
        figures = asyncio_figures(args.target, asyncio.new_event_loop)
    print(json.dumps(figures), flush=True)


if __name__ == "__main__":
    main()
