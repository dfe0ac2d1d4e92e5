"""A foreign main loop drives the hub: Hub.tick(), fileno(), next_deadline()."""

import importlib.util
import os
import select
import threading

import microthreads

EXAMPLE = os.path.join(os.path.dirname(__file__), os.pardir, "examples", "game_loop.py")


def load_example():
    spec = importlib.util.spec_from_file_location("game_loop", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def readable(fd):
    return select.select([fd], [], [], 0)[0] == [fd]


def test_tick_runs_one_iteration_and_says_whether_work_is_left():
    events = []
    hub = microthreads.get_hub()

    def worker():
        for i in range(2):
            events.append(i)
            microthreads.sleep(0)

    microthreads.spawn(worker)
    results = []
    for _ in range(4):
        results.append(hub.tick())
        events.append("tick")
    assert events == [0, "tick", 1, "tick", "tick", "tick"]
    assert results == [True, True, True, False]    # the last: its finish hooks ran


def test_tick_returns_false_when_nothing_is_left():
    assert microthreads.get_hub().tick() is False


def test_next_deadline_is_now_with_work_ready_the_earliest_timer_or_none(virtual_clock):
    hub = microthreads.get_hub()
    assert hub.next_deadline() is None                 # nothing at all
    sleeper = microthreads.spawn(microthreads.sleep, 5)
    assert hub.next_deadline() == 0.0                  # ready to start: now
    hub.tick()
    assert hub.next_deadline() == 5.0                  # the sleeper's timer
    virtual_clock.advance(5)
    hub.tick()
    assert sleeper.dead
    assert hub.next_deadline() == 5.0                  # its finish hooks are ready


def test_tick_zero_does_not_jump_a_virtual_clock_but_a_tick_that_would_wait_does(virtual_clock):
    hub = microthreads.get_hub()
    microthreads.spawn(microthreads.sleep, 5)
    hub.tick()
    hub.tick()
    assert virtual_clock.now() == 0.0                  # tick(0) never waits
    hub.tick(timeout=10)
    assert virtual_clock.now() == 5.0                  # it would have slept until then


def test_next_deadline_is_none_when_the_hub_waits_only_on_io(socket_pair):
    a, _ = socket_pair
    hub = microthreads.get_hub()
    microthreads.spawn(hub.wait_readable, a.fileno())
    hub.tick()
    assert hub.next_deadline() is None


def test_fileno_becomes_readable_when_a_watched_socket_has_data(socket_pair):
    a, b = socket_pair
    hub = microthreads.get_hub()
    reader = microthreads.spawn(lambda: (hub.wait_readable(a.fileno()), a.recv(10))[1])
    hub.tick()
    assert not readable(hub.fileno())
    b.send(b"hello")
    assert readable(hub.fileno())
    hub.tick()
    hub.tick()
    assert reader.value == b"hello"


def test_fileno_becomes_readable_on_call_soon_threadsafe():
    hub = microthreads.get_hub()
    events = []
    hub.tick()
    assert not readable(hub.fileno())
    thread = threading.Thread(target=hub.call_soon_threadsafe, args=(events.append, "called"))
    thread.start()
    thread.join()
    assert readable(hub.fileno())
    hub.tick()
    hub.tick()
    assert events == ["called"]


def test_tick_with_a_timeout_waits_for_io_that_far_and_serves_it(socket_pair):
    a, b = socket_pair
    hub = microthreads.get_hub()
    reader = microthreads.spawn(lambda: (hub.wait_readable(a.fileno()), a.recv(10))[1])
    hub.tick()                                         # the reader waits now
    threading.Timer(0.005, b.send, (b"late",)).start()
    hub.tick(timeout=30)                               # returns as soon as the data came
    assert reader.dead and reader.value == b"late"


def test_a_tasklet_blocked_between_ticks_gets_no_deadlock_error():
    hub = microthreads.get_hub()
    event = microthreads.Event()
    waiter = microthreads.spawn(event.wait)
    for _ in range(3):
        hub.tick()
    assert not waiter.dead                             # the host may still set it
    event.set()
    hub.tick()
    assert waiter.value is True


def test_the_game_loop_example_serves_a_socket_between_frames_at_a_fixed_rate():
    example = load_example()
    frames, fps = 10, 200
    result = example.serve_echo_in_game_loop(frames, fps)
    lines = [b"frame %d\n" % i for i in range(frames)]
    assert result["sent"] == b"".join(lines)
    # each frame reads back the echo of every earlier frame: the hub ran in between
    assert result["received in frames"] == b"".join(lines[:-1])
    assert result["received"] == result["sent"]
    assert result["echo done"]
    assert result["elapsed"] >= (frames - 1) / fps     # never faster than the frame rate
    assert result["ticks"] <= 5 * frames               # it waits on fileno(), not spins


def test_the_game_loop_example_runs_as_a_script():
    example = load_example()
    assert example.main(["3", "500"]) == 0
