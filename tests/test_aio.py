"""microthreads.aio: tasklets and coroutines on one thread and one asyncio loop."""

from __future__ import annotations

import asyncio
import contextvars
import importlib.util
import logging
import os
import resource
import shutil

import pytest

import microthreads
from microthreads import aio, net

#: A bound for waits that only a bug makes long (real seconds).
LIMIT = 10


def run(main, *args, **kwargs):
    """``aio.run(main)`` under a time limit: a bug fails, it does not hang."""
    return aio.run(microthreads.with_timeout, LIMIT, main, *args, **kwargs)


# ----------------------------------------------------------------- run, await_


def test_run_returns_main_value_and_awaits_coroutines_from_the_tasklet():
    async def double(x):
        await asyncio.sleep(0.001)
        return 2 * x

    def main(x):
        return aio.await_(double(x)) + aio.await_(double(1))

    assert aio.run(main, 20) == 42


def test_run_raises_main_error_after_its_finish_hooks_ran():
    events = []

    def main():
        microthreads.on_finish(events.append, "hook")
        raise KeyError("boom")

    with pytest.raises(KeyError, match="boom"):
        aio.run(main)
    assert events == ["hook"]


def test_await_raises_what_the_coroutine_raised():
    async def fail():
        await asyncio.sleep(0)
        raise ValueError("from asyncio")

    def main():
        with pytest.raises(ValueError, match="from asyncio"):
            aio.await_(fail())
        return "went on"

    assert run(main) == "went on"


def test_await_of_a_finished_future_returns_without_waiting():
    def main():
        future = asyncio.get_running_loop().create_future()
        future.set_result("ready")
        return aio.await_(future)

    assert run(main) == "ready"


def test_await_without_a_driving_loop_names_aio_run():
    async def nothing():
        return None

    def main():
        coro = nothing()
        try:
            aio.await_(coro)
        finally:
            coro.close()

    with pytest.raises(RuntimeError, match=r"aio\.run"):
        microthreads.run(main)


def test_await_from_a_coroutine_is_refused():
    async def coroutine_side():
        future = asyncio.get_running_loop().create_future()
        with pytest.raises(RuntimeError, match="from a tasklet"):
            aio.await_(future)
        return "refused"

    def main():
        return aio.await_(coroutine_side())

    assert run(main) == "refused"


def test_a_coroutine_sees_the_tasklet_context_variables():
    var = contextvars.ContextVar("var", default="unset")

    async def read():
        return var.get()

    def main():
        var.set("tasklet's")
        return aio.await_(read())

    assert run(main) == "tasklet's"


# ------------------------------------------------------------ cancellation


def test_a_timeout_cancels_the_awaited_task_and_leaves_nothing_pending():
    events = []

    async def slow():
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            events.append("cancelled")
            raise

    def main():
        with pytest.raises(microthreads.Timeout), microthreads.Timeout(0.05):
            aio.await_(slow())
        events.append("timed out")
        current = asyncio.current_task()       # None: a tasklet is no asyncio task
        return [t for t in asyncio.all_tasks() if t is not current and not t.done()]

    still_pending = run(main)
    assert events == ["cancelled", "timed out"]
    assert len(still_pending) == 1                  # aio.run's own main task only


def test_killing_a_tasklet_cancels_what_it_awaits():
    events = []
    started = microthreads.Event()

    async def slow():
        started.set()
        try:
            await asyncio.sleep(60)
        finally:
            events.append("coroutine's finally")

    def waiter():
        try:
            aio.await_(slow())
        finally:
            events.append("tasklet's finally")

    def main():
        tasklet = microthreads.spawn(waiter)
        started.wait()
        tasklet.kill()                              # blocks until it has ended
        events.append("killed")
        return tasklet.successful()

    assert run(main) is True
    assert events == ["coroutine's finally", "tasklet's finally", "killed"]


def test_cancelling_wait_tasklet_does_not_kill_the_tasklet():
    def worker():
        microthreads.sleep(0.05)
        return "finished anyway"

    async def impatient(tasklet):
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(aio.wait_tasklet(tasklet), 0.001)

    def main():
        tasklet = microthreads.spawn(worker)
        aio.await_(impatient(tasklet))
        return tasklet.get()

    assert run(main) == "finished anyway"


def test_cancelling_to_tasklet_kills_the_tasklet_it_started():
    events = []

    def worker():
        try:
            microthreads.sleep(60)
        finally:
            events.append("tasklet's finally")

    async def impatient():
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(aio.to_tasklet(worker), 0.01)
        events.append("cancelled")

    def main():
        aio.await_(impatient())

    run(main)
    assert events == ["tasklet's finally", "cancelled"]


# ----------------------------------------------------- coroutines on tasklets


def test_a_coroutine_awaits_a_tasklet_for_its_value():
    def worker(x):
        microthreads.sleep(0.001)
        return x + 1

    async def coroutine_side():
        tasklet = microthreads.spawn(worker, 1)
        first = await tasklet
        second = await aio.wait_tasklet(microthreads.spawn(worker, 10))
        return first, second, await aio.to_tasklet(worker, 100)

    def main():
        return aio.await_(coroutine_side())

    assert run(main) == (2, 11, 101)


def test_a_tasklet_error_is_raised_in_the_awaiting_coroutine_and_not_logged(caplog):
    def worker():
        raise LookupError("tasklet failed")

    async def coroutine_side():
        with pytest.raises(LookupError, match="tasklet failed"):
            await microthreads.spawn(worker)
        return "caught"

    def main():
        return aio.await_(coroutine_side())

    with caplog.at_level(logging.ERROR, logger="microthreads"):
        assert run(main) == "caught"
    assert "tasklet failed" not in caplog.text


def test_work_a_coroutine_hands_the_hub_directly_is_noticed():
    """No descriptor or timer fires for an Event.set() made by a coroutine."""
    event = microthreads.Event()

    async def setter():
        await asyncio.sleep(0.01)
        event.set()

    def main():
        hub = microthreads.get_hub()
        task = asyncio.ensure_future(setter())      # runs on its own; nobody awaits it
        started = hub.clock()
        event.wait(5)
        waited = hub.clock() - started
        aio.await_(task)
        return waited

    assert run(main) < 2.5          # 0.01 s when noticed; 5 s (the wait's timer) if not


# ------------------------------------------------------------ I/O and timers


def test_a_tasklet_uses_an_asyncio_server_and_a_coroutine_uses_a_stream_server():
    async def asyncio_echo(reader, writer):
        while line := await reader.readline():
            writer.write(line.upper())
            await writer.drain()
        writer.close()

    def tasklet_echo(conn):
        for line in conn:
            conn.write(line[::-1].strip() + b"\n")

    async def coroutine_client(address):
        reader, writer = await asyncio.open_connection(*address)
        writer.write(b"abc\n")
        reply = await reader.readline()
        writer.close()
        await writer.wait_closed()
        return reply

    def main():
        server = aio.await_(asyncio.start_server(asyncio_echo, "127.0.0.1", 0))
        address = server.sockets[0].getsockname()[:2]
        conn = net.connect(address)
        conn.sendall(b"from a tasklet\n")
        upper = conn.recv_line()
        conn.close()
        server.close()
        aio.await_(server.wait_closed())

        stream_server = net.StreamServer(("127.0.0.1", 0), tasklet_echo)
        stream_server.start()
        reversed_line = aio.await_(coroutine_client(stream_server.address))
        stream_server.stop()
        return upper, reversed_line

    assert run(main) == (b"FROM A TASKLET\n", b"cba\n")


def test_a_thousand_tasklets_each_await_an_asyncio_sleep():
    def sleeper(i):
        aio.await_(asyncio.sleep(0.001 * (i % 10)))
        return i

    def main():
        tasklets = [microthreads.spawn(sleeper, i) for i in range(1000)]
        microthreads.joinall(tasklets, raise_error=True)
        return sum(t.value for t in tasklets)

    assert run(main) == sum(range(1000))


def test_run_in_thread_from_a_tasklet_under_asyncio():
    def main():
        return microthreads.run_in_thread(os.getpid)

    assert run(main) == os.getpid()


def test_an_idle_wait_on_both_sides_burns_no_cpu():
    """Both sides asleep: the thread sleeps in the selector, it does not poll."""
    def main():
        task = asyncio.ensure_future(asyncio.sleep(0.3))
        before = resource.getrusage(resource.RUSAGE_SELF)
        microthreads.sleep(0.3)
        aio.await_(task)
        after = resource.getrusage(resource.RUSAGE_SELF)
        return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)

    assert run(main) < 0.15                         # a busy poll would burn ~0.3 s


# --------------------------------------------------------------- serve_hub


def test_serve_hub_drives_tasklets_inside_an_asyncio_application():
    results = []

    def worker(n):
        microthreads.sleep(0.001)
        results.append(n)
        return n * n

    async def app():
        hub_task = asyncio.ensure_future(aio.serve_hub())
        await asyncio.sleep(0)
        squares = await asyncio.gather(*(aio.to_tasklet(worker, n) for n in range(5)))
        hub_task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await hub_task
        return squares

    loop = asyncio.new_event_loop()
    try:
        assert loop.run_until_complete(app()) == [0, 1, 4, 9, 16]
    finally:
        loop.close()
    assert sorted(results) == [0, 1, 2, 3, 4]


def test_serve_hub_twice_at_once_is_refused():
    async def app():
        first = asyncio.ensure_future(aio.serve_hub())
        await asyncio.sleep(0)
        with pytest.raises(RuntimeError, match="already driven"):
            await aio.serve_hub()
        first.cancel()
        await asyncio.gather(first, return_exceptions=True)

    loop = asyncio.new_event_loop()
    try:
        loop.run_until_complete(app())
    finally:
        loop.close()


def test_on_uvloop():
    pytest.importorskip("uvloop", reason="uvloop is not installed ('.[test]' installs it)")

    async def double(x):
        await asyncio.sleep(0.001)
        return 2 * x

    def main():
        return aio.await_(double(21))

    assert aio.run(main, use_uvloop=True) == 42


# --------------------------------------------------------------- redis.asyncio

REDIS_SERVER = shutil.which("redis-server")


@pytest.mark.slow
@pytest.mark.skipif(REDIS_SERVER is None, reason="needs redis-server: run `make system-deps`")
def test_redis_asyncio_from_a_tasklet(redis_server_url):
    redis_asyncio = pytest.importorskip("redis.asyncio", reason="needs redis-py: '.[test]'")

    def main():
        client = redis_asyncio.from_url(redis_server_url)
        try:
            aio.await_(client.set("greeting", "hello"))
            tasklets = [microthreads.spawn(aio.await_, client.incr("counter")) for _ in range(50)]
            microthreads.joinall(tasklets, raise_error=True)
            return aio.await_(client.get("greeting")), aio.await_(client.get("counter"))
        finally:
            aio.await_(client.aclose() if hasattr(client, "aclose") else client.close())

    assert run(main) == (b"hello", b"50")


@pytest.mark.slow
@pytest.mark.skipif(REDIS_SERVER is None, reason="needs redis-server: run `make system-deps`")
def test_the_telnet_to_redis_example_stores_each_line(redis_server_url):
    redis_sync = pytest.importorskip("redis", reason="needs redis-py: '.[test]'")
    path = os.path.join(os.path.dirname(__file__), os.pardir, "examples", "telnet_to_redis.py")
    spec = importlib.util.spec_from_file_location("telnet_to_redis", path)
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)

    def user(server):                       # a telnet user, as plain socket code
        conn = net.connect(server.address)
        greeting = conn.recv_line()
        replies = []
        for line in (b"first\r\n", b"second\r\n"):
            conn.sendall(line)
            replies.append(conn.recv_line())
        conn.sendall(b"/quit\r\n")
        conn.recv_line()                    # b"": the server closed it
        conn.close()
        server.stop()
        return greeting, replies

    users = []
    aio.run(microthreads.with_timeout, LIMIT, example.serve, redis_server_url, 0,
            lambda server: users.append(microthreads.spawn(user, server)))
    greeting, replies = users[0].get()
    assert greeting.startswith(b"Type lines")
    assert replies == [b"stored as line 1\r\n", b"stored as line 2\r\n"]
    stored = redis_sync.Redis.from_url(redis_server_url).lrange("lines", 0, -1)
    assert stored == [b"first", b"second"]


@pytest.fixture
def redis_server_url():
    from test_federation import RedisServer
    server = RedisServer()
    yield server.url
    server.stop()


# ----------------------------------------------------------------- deadlock


def test_a_deadlock_is_reported_when_neither_side_has_anything_left():
    def main():
        never = microthreads.Event()
        never.wait()

    with pytest.raises(microthreads.DeadlockError, match="Event"):
        aio.run(main)


def test_no_deadlock_is_reported_while_asyncio_work_is_pending():
    event = microthreads.Event()

    async def later():
        await asyncio.sleep(0.05)
        event.set()

    def main():
        task = asyncio.ensure_future(later())
        event.wait()                    # the hub alone has nothing that could wake it
        aio.await_(task)
        return "set by a coroutine"

    assert run(main) == "set by a coroutine"


def test_a_tasklet_awaiting_a_future_nobody_can_resolve_is_told():
    def main():
        aio.await_(asyncio.get_running_loop().create_future())

    with pytest.raises(microthreads.DeadlockError, match="main"):
        aio.run(main)
