"""Global instrumentation: on_spawn, on_finish, on_switch, remove."""

import greenlet
import pytest

import microthreads
from microthreads import hooks


@pytest.fixture
def installed():
    """Register hooks through this list; every one is removed after the test."""
    fns = []
    yield fns
    for fn in fns:
        hooks.remove(fn)


def test_on_spawn_is_called_in_the_spawner_before_the_tasklet_runs(installed):
    main_greenlet = greenlet.getcurrent()
    events = []

    @hooks.on_spawn
    def spawned(tasklet):
        current = microthreads.getcurrent()
        spawner = "main greenlet" if current is main_greenlet else current.name
        events.append((tasklet.name, "spawned by", spawner, "started", tasklet.started))

    installed.append(spawned)

    def child():
        events.append("child runs")

    def parent():
        events.append("parent runs")
        microthreads.spawn(child).join()

    microthreads.run(parent)
    assert callable(spawned)                      # the decorator returns the function
    assert events == [
        (parent.__qualname__, "spawned by", "main greenlet", "started", False),
        "parent runs",
        (child.__qualname__, "spawned by", parent.__qualname__, "started", False),
        "child runs",
    ]


def test_on_finish_is_called_once_per_tasklet_after_its_own_finish_hooks(installed):
    events = []
    installed.append(hooks.on_finish(lambda t: events.append(("global", t.name, t.dead))))

    def main():
        first = microthreads.spawn(lambda: None)
        first.name = "returns"
        first.on_finish(events.append, "own hook")
        second = microthreads.spawn(microthreads.sleep, 60)
        second.name = "killed"
        microthreads.sleep(0)
        second.kill()
        first.join()

    microthreads.run(main)
    main_name = main.__qualname__
    assert events == ["own hook", ("global", "returns", True), ("global", "killed", True),
                      ("global", main_name, True)]


def test_on_switch_is_called_with_previous_and_next_on_every_switch(installed):
    main_greenlet = greenlet.getcurrent()
    switches = []

    def label(g):
        if g is main_greenlet:
            return "main"
        return g.name if isinstance(g, microthreads.Tasklet) else "hub"

    installed.append(hooks.on_switch(lambda prev, nxt: switches.append((label(prev),
                                                                        label(nxt)))))

    def body():
        microthreads.sleep(0)

    tasklet = microthreads.spawn(body)
    tasklet.name = "t"
    microthreads.run()
    hooks.remove(installed[0])
    assert switches == [("main", "hub"), ("hub", "t"), ("t", "hub"), ("hub", "t"),
                        ("t", "hub"), ("hub", "main")]


def test_remove_unregisters_a_hook_from_every_list_and_ignores_unknown_ones(installed):
    events = []

    def hook(*args):
        events.append(len(args))

    hooks.on_spawn(hook)
    hooks.on_finish(hook)
    hooks.on_switch(hook)
    installed.append(hook)
    hooks.remove(hook)
    hooks.remove(hook)                            # unknown now: ignored
    microthreads.run(lambda: None)
    assert events == []


def test_a_raising_hook_is_logged_and_removed_and_the_runtime_goes_on(installed, caplog):
    calls = []

    @hooks.on_spawn
    def broken(tasklet):
        calls.append(tasklet)
        raise RuntimeError("hook bug")

    installed.append(broken)
    first = microthreads.spawn(lambda: "first")
    second = microthreads.spawn(lambda: "second")
    microthreads.run()
    assert calls == [first]
    assert (first.value, second.value) == ("first", "second")
    [record] = [r for r in caplog.records if r.name == "microthreads"]
    assert "raised; it is removed" in record.getMessage()
    assert record.exc_info[0] is RuntimeError


def test_a_raising_switch_hook_is_removed_and_switching_goes_on(installed, caplog):
    calls = []

    def broken(previous, next_):
        calls.append("called")
        raise RuntimeError("hook bug")

    installed.append(hooks.on_switch(broken))
    assert microthreads.run(lambda: (microthreads.sleep(0), "done")[1]) == "done"
    assert calls == ["called"]
    assert len([r for r in caplog.records if r.name == "microthreads"]) == 1
