"""Global instrumentation hooks: on spawn, on finish, on every switch.

Each registration function returns ``fn``, so it serves as a decorator::

    @microthreads.hooks.on_spawn
    def count(tasklet):
        spawned[tasklet.name] += 1

Spawn and finish hooks are called as ``fn(tasklet)``; switch hooks as
``fn(previous, next)`` with the greenlets involved (a tasklet, for the
runner greenlet that runs it; the hub's greenlet or the thread's main
greenlet). A hook that raises is logged and
removed. Hooks are process-wide; switch hooks cost nothing until one is added.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Callable, TypeVar

import greenlet

if TYPE_CHECKING:
    from .tasklet import Tasklet

__all__ = ["on_finish", "on_spawn", "on_switch", "remove"]

F = TypeVar("F", bound=Callable[..., Any])

log = logging.getLogger("microthreads")

spawn_hooks: list[Callable[[Tasklet], object]] = []
finish_hooks: list[Callable[[Tasklet], object]] = []
switch_hooks: list[Callable[[greenlet.greenlet, greenlet.greenlet], object]] = []


def on_spawn(fn: F) -> F:
    """Call ``fn(tasklet)`` whenever a tasklet is spawned (in the spawner)."""
    spawn_hooks.append(fn)
    return fn


def on_finish(fn: F) -> F:
    """Call ``fn(tasklet)`` whenever a tasklet has ended (on the hub, after its own hooks)."""
    finish_hooks.append(fn)
    return fn


def on_switch(fn: F) -> F:
    """Call ``fn(previous, next)`` on every greenlet switch (and throw)."""
    switch_hooks.append(fn)
    if len(switch_hooks) == 1:
        greenlet.settrace(_trace)
    return fn


def remove(fn: Callable[..., Any]) -> None:
    """Unregister ``fn`` from every hook list it is in; unknown fn is ignored."""
    for hooks in (spawn_hooks, finish_hooks, switch_hooks):
        while fn in hooks:
            hooks.remove(fn)
    if not switch_hooks:
        greenlet.settrace(None)


def _fire(hooks: list[Callable[..., object]], *args: Any) -> None:
    for fn in list(hooks):
        try:
            fn(*args)
        except Exception:
            log.exception("microthreads: hook %r raised; it is removed", fn)
            remove(fn)


def fire_spawn(tasklet: Tasklet) -> None:
    _fire(spawn_hooks, tasklet)


def fire_finish(tasklet: Tasklet) -> None:
    if finish_hooks:
        _fire(finish_hooks, tasklet)


def _trace(event: str, args: tuple[greenlet.greenlet, greenlet.greenlet]) -> None:
    if event in ("switch", "throw"):
        origin, target = args              # a tasklet's runner greenlet stands for it
        _fire(switch_hooks, getattr(origin, "tasklet", None) or origin,
              getattr(target, "tasklet", None) or target)
