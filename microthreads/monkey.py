"""Opt-in patching: make the stdlib's blocking calls cooperate, for unmodified code.

::

    from microthreads import monkey
    monkey.patch_all()          # first, before importing what should cooperate
    import urllib.request, microthreads
    ...                         # urlopen() in a tasklet now parks it, not the thread

Importing ``microthreads`` patches nothing; each ``patch_*`` is explicit and
idempotent, and there is no unpatching. What each one replaces:

- ``patch_socket()``: ``socket.socket`` (the class), ``create_connection``,
  ``socketpair``, ``fromfd``, ``create_server`` and the name lookups
  (``getaddrinfo``, ``gethostbyname``, ``gethostbyname_ex``,
  ``gethostbyaddr``, ``getnameinfo``) by ``microthreads.net.socket``'s, whose
  lookups run in ``run_in_thread``.
- ``patch_ssl()``: ``ssl.SSLContext.sslsocket_class`` and ``wrap_socket``:
  every context's ``wrap_socket`` (the stdlib's, and so urllib's,
  http.client's, urllib3's and redis-py's) makes a
  ``microthreads.net.ssl.SSLSocket``, whatever socket it is given and however
  early the context class was imported; a context's own ``sslsocket_class``
  (a subclass of ``ssl.SSLSocket``) gives sockets of that class that cooperate.
- ``patch_select()``: ``select.select``, ``select.poll`` and the ``selectors``
  classes (``SelectSelector``, ``PollSelector``, ``EpollSelector``, ...; each
  the stdlib class of that name with a cooperative ``select`` in front, and
  ``DefaultSelector`` the one the stdlib picks): a wait with a timeout other
  than 0 parks the tasklet until a descriptor is ready, then the real call
  answers with a zero timeout. An ``SSLSocket`` holding decrypted bytes (``pending()``) counts as
  readable. ``select.epoll`` objects themselves are left alone (the hub uses
  them).
- ``patch_time()``: ``time.sleep`` becomes ``microthreads.sleep``.
- ``patch_thread()``: the locks under ``threading`` (``threading.Lock``,
  ``threading.RLock()``, ``_thread.allocate_lock``, ``_thread.RLock``)
  become ``microthreads.hybrid``'s, which tasklets and OS threads share: a
  tasklet that waits parks, a thread blocks, and a release hands the lock
  to the first waiter of either kind. The stdlib's pure-Python
  ``Condition``, ``Semaphore``, ``BoundedSemaphore``, ``Event``,
  ``Barrier``, ``Timer``, ``queue.Queue`` (and its Lifo/Priority kinds) and
  ``concurrent.futures``' waits (``Future.result``, ``wait``,
  ``as_completed``) are built on them and cooperate unmodified, for
  objects made after the call. ``threading.local`` becomes
  ``microthreads.local.local``: one namespace per tasklet.
  ``current_thread()`` and ``get_ident()`` stay the OS thread's;
  ``Thread.start()`` waits for the new thread for real, as before.
- ``patch_queue()``: ``patch_thread()``, and ``queue.SimpleQueue`` (C)
  becomes the stdlib's pure-Python one, built on those locks.

Patch before importing the code that should cooperate: a module that did
``from socket import socket`` earlier keeps the blocking class.

Called from a thread whose hub is not running (the main thread before
``microthreads.run``, a plain ``threading.Thread``), a patched call still
behaves as the blocking call would: that thread's own hub serves it until it
is done (other tasklets of that thread run meanwhile); a thread that has no
hub, or the hub itself, blocks for real. Threads stay real OS threads
(``threading.Thread``, ``run_in_thread``: what keeps blocking work off the
hub); only their locks are shared with tasklets. What still blocks: C extensions doing
their own I/O (psycopg2 without its wait callback, for one), file I/O
(use ``run_in_thread``); ``MICROTHREADS_WATCHDOG_MS`` names the culprit.
"""

from __future__ import annotations

import _thread
import queue as _queue
import select as _select
import selectors as _selectors
import socket as _socket
import ssl as _ssl
import threading as _threading
import time as _time
from typing import Any, Callable

from greenlet import getcurrent

from . import threads
from .hub import Hub, get_hub
from .hybrid import HybridLock, HybridRLock, waits_block_the_thread
from .timeout import sleep as _cooperative_sleep

__all__ = ["is_patched", "patch_all", "patch_queue", "patch_select", "patch_socket",
           "patch_ssl", "patch_thread", "patch_time"]
_NAMES = ("socket", "ssl", "select", "time", "thread", "queue")

#: name -> {(module, attribute): the original}, for is_patched and the record
_patched: dict[str, dict[tuple[Any, str], Any]] = {}

_original_select = _select.select
_original_poll = getattr(_select, "poll", None)
_original_sleep = _time.sleep


def is_patched(name: str) -> bool:
    """Whether ``patch_<name>()`` has run: ``"socket"``, ``"ssl"``, ``"select"``,
    ``"time"``, ``"thread"``, ``"queue"``; ValueError for any other name."""
    if name not in _NAMES:
        raise ValueError(f"nothing called {name!r} can be patched")
    return name in _patched


def _replace(name: str, replacements: dict[tuple[Any, str], Any]) -> None:
    if name in _patched:
        return
    _patched[name] = {(module, attr): getattr(module, attr, None)
                      for (module, attr) in replacements}
    for (module, attr), value in replacements.items():
        setattr(module, attr, value)


def patch_all() -> None:
    """``patch_socket()``, ``patch_ssl()``, ``patch_select()``, ``patch_time()``,
    ``patch_thread()`` and ``patch_queue()``."""
    patch_socket()
    patch_ssl()
    patch_select()
    patch_time()
    patch_thread()
    patch_queue()


def patch_socket() -> None:
    """The stdlib ``socket`` module's class and helpers become microthreads.net.socket's."""
    from .net import socket as cosocket
    names = ("socket", "create_connection", "socketpair", "fromfd", "create_server",
             "getaddrinfo", "gethostbyname", "gethostbyname_ex", "gethostbyaddr",
             "getnameinfo")
    _replace("socket", {(_socket, name): getattr(cosocket, name) for name in names})


def patch_ssl() -> None:
    """Every ``ssl.SSLContext.wrap_socket`` makes a cooperative SSLSocket."""
    from .net import ssl as cossl
    _replace("ssl", {(_ssl.SSLContext, "sslsocket_class"): cossl.SSLSocket,
                     (_ssl.SSLContext, "wrap_socket"): cossl.SSLContext.wrap_socket})


def patch_select() -> None:
    """``select.select``, ``select.poll`` and the ``selectors`` classes park the tasklet."""
    replacements: dict[tuple[Any, str], Any] = {(_select, "select"): select}
    if _original_poll is not None:
        replacements[(_select, "poll")] = poll
    for name, cooperative in _COOPERATIVE_SELECTORS.items():
        replacements[(_selectors, name)] = cooperative
    _replace("select", replacements)


def patch_time() -> None:
    """``time.sleep`` becomes ``microthreads.sleep`` (the hub's own calls excepted)."""
    _replace("time", {(_time, "sleep"): sleep})


def patch_thread() -> None:
    """``threading``'s and ``_thread``'s locks become ``microthreads.hybrid``'s, and
    ``threading.local`` one namespace per tasklet (the module docstring says what
    cooperates then). ``run_in_thread``'s pool is made first, on real locks."""
    if "thread" in _patched:
        return
    threads.make_pool()                      # its queue and locks stay the real ones
    from .local import local
    _replace("thread", {(_thread, "allocate_lock"): HybridLock, (_thread, "RLock"): HybridRLock,
                        (_threading, "_allocate_lock"): HybridLock,
                        (_threading, "Lock"): HybridLock, (_threading, "_CRLock"): HybridRLock,
                        (_threading, "local"): local,
                        (_threading.Thread, "start"): _start_thread})


_original_start = _threading.Thread.start


def _start_thread(thread: _threading.Thread) -> None:
    """``Thread.start``, waiting for the new thread for real, as unpatched: callers
    hold real locks across it (``concurrent.futures``' shutdown lock)."""
    with waits_block_the_thread():
        _original_start(thread)


def patch_queue() -> None:
    """``patch_thread()``, then ``queue.SimpleQueue`` becomes the stdlib's pure-Python one.

    The C ``SimpleQueue`` takes no lock of Python's, so it cannot cooperate;
    the pure-Python one (which CPython keeps for interpreters without
    ``_queue``) waits on a ``threading.Semaphore``, a hybrid lock after
    ``patch_thread()``. Unlike the C one it is not reentrant: a ``put`` from
    a signal handler or ``__del__`` while the same queue is in use may
    deadlock.
    """
    patch_thread()
    _replace("queue", {(_queue, "SimpleQueue"): _queue._PySimpleQueue})  # type: ignore[attr-defined]


# ------------------------------------------------------------ the replacements


def _hub_that_can_wait() -> Hub | None:
    """This thread's hub if the caller may park on it; None for the hub itself
    (its own poll, a callback), which must get the real, blocking call."""
    hub = get_hub()
    return None if getcurrent() is hub.greenlet else hub


def sleep(seconds: float) -> None:
    """``time.sleep``, parking the tasklet: ``microthreads.sleep``."""
    if seconds < 0:
        raise ValueError("sleep length must be non-negative")
    if _hub_that_can_wait() is None:
        _original_sleep(seconds)
    else:
        _cooperative_sleep(seconds)


def _fileno(obj: Any) -> int:
    """The descriptor of ``obj`` as ``select()`` reads it: an int, or ``obj.fileno()``
    called once; TypeError and ValueError with the stdlib's messages."""
    if isinstance(obj, int):
        fd = obj
    else:
        method = getattr(obj, "fileno", None)
        if method is None:
            raise TypeError("argument must be an int, or have a fileno() method.")
        fd = method()
        if not isinstance(fd, int):
            raise TypeError("fileno() returned a non-integer")
    if fd < 0:
        raise ValueError(f"file descriptor cannot be a negative integer ({fd})")
    return fd


def _seconds(timeout: Any) -> float | None:
    """A ``select()`` timeout checked as the stdlib checks it."""
    if timeout is None:
        return None
    if not isinstance(timeout, (int, float)):
        raise TypeError("timeout must be a float or None")
    if timeout != timeout:
        raise ValueError("Invalid value NaN (not a number)")
    if timeout < 0:
        raise ValueError("timeout must be non-negative")
    return float(timeout)


def _wait_any(hub: Hub, readers: list[int], writers: list[int],
              timeout: float | None) -> None:
    """Park until one of the descriptors is ready, or ``timeout`` seconds pass.

    Each is watched through a hub callback for the wait only. A descriptor
    another tasklet already waits on (same side) raises RuntimeError, as two
    readers of one socket do; one the hub cannot poll (a regular file) counts
    as ready, as select() says of it.
    """
    current = getcurrent()
    watched: list[tuple[Callable[[int], None], int]] = []

    def wake() -> None:
        hub.schedule_wakeup(current)

    try:
        for fds, add, remove in ((readers, hub.add_reader, hub.remove_reader),
                                 (writers, hub.add_writer, hub.remove_writer)):
            for fd in fds:
                try:
                    add(fd, wake)            # RuntimeError if that side is taken
                except PermissionError:      # a regular file: always ready, no wait
                    remove(fd)
                    return
                watched.append((remove, fd))
        hub.park(timeout)
    finally:
        for unwatch, fd in watched:
            unwatch(fd)


def select(rlist: Any, wlist: Any, xlist: Any, timeout: float | None = None) -> Any:
    """``select.select``, parking the tasklet while nothing is ready.

    Returns what the real ``select`` returns (the objects given, in the
    order given), raises what it raises; each object's ``fileno()`` is
    called once. A timeout of 0 (a poll) or a call from the hub itself goes
    straight to the real one.
    """
    hub = None if timeout == 0 else _hub_that_can_wait()
    if hub is None:
        return _original_select(rlist, wlist, xlist, timeout)
    seconds = _seconds(timeout)
    given = [[(obj, _fileno(obj)) for obj in objects] for objects in (rlist, wlist, xlist)]
    rfds, wfds, xfds = ([fd for _obj, fd in pairs] for pairs in given)
    buffered = [obj for obj, _fd in given[0] if _has_pending(obj)]
    ready = _original_select(rfds, wfds, xfds, 0)   # ready now? (EBADF as the stdlib's)
    if not buffered and not any(ready):
        _wait_any(hub, rfds, wfds, seconds)
        ready = _original_select(rfds, wfds, xfds, 0)
    readable, writable, exceptional = (set(fds) for fds in ready)
    return ([obj for obj, fd in given[0] if fd in readable or obj in buffered],
            [obj for obj, fd in given[1] if fd in writable],
            [obj for obj, fd in given[2] if fd in exceptional])


def _has_pending(obj: Any) -> bool:
    """An SSLSocket with decrypted bytes inside: readable, whatever its descriptor says."""
    pending = getattr(obj, "pending", None)
    try:
        return bool(pending is not None and pending())
    except (OSError, ValueError):
        return False


def poll() -> _Poll:
    """``select.poll()``: a polling object whose ``poll(timeout)`` parks the tasklet."""
    assert _original_poll is not None
    return _Poll(_original_poll())


class _Poll:
    """The object ``select.poll()`` returns; like the stdlib's type, not made directly."""

    def __init__(self, real: Any = None) -> None:
        if real is None:
            raise TypeError(f"cannot create '{__name__}._Poll' instances")
        self._poll = real
        self._masks: dict[int, int] = {}

    def register(self, fd: Any, eventmask: int = _select.POLLIN | _select.POLLPRI |
                 _select.POLLOUT) -> None:
        number = _fileno(fd)                 # fileno() once, as the real one calls it
        self._poll.register(number, eventmask)
        self._masks[number] = eventmask

    def modify(self, fd: Any, eventmask: int) -> None:
        number = _fileno(fd)
        self._poll.modify(number, eventmask)
        self._masks[number] = eventmask

    def unregister(self, fd: Any) -> None:
        number = _fileno(fd)
        self._poll.unregister(number)
        del self._masks[number]

    def poll(self, timeout: float | None = None) -> list[tuple[int, int]]:
        """As ``select.poll().poll``: ``timeout`` in milliseconds, None or negative: no limit."""
        hub = None if timeout == 0 else _hub_that_can_wait()
        if hub is not None:
            seconds = None if timeout is None or timeout < 0 else timeout / 1000.0
            readers = [fd for fd, m in self._masks.items() if m & (_select.POLLIN |
                                                                    _select.POLLPRI)]
            writers = [fd for fd, m in self._masks.items() if m & _select.POLLOUT]
            _wait_any(hub, readers, writers, seconds)
            timeout = 0
        return list(self._poll.poll(timeout))


class _CooperativeSelect:
    """What every cooperative ``selectors`` class adds to the stdlib's: ``select(timeout)``
    parks the tasklet until a registered descriptor is ready, then the real
    ``select(0)`` answers. The hub's own poll (``MICROTHREADS_POLLER=selectors``)
    gets the real wait. Everything else (what ``register`` accepts or refuses:
    epoll refuses a regular file with EPERM) is the stdlib class's own."""

    def select(self, timeout: float | None = None) -> list[tuple[Any, int]]:
        hub = None if timeout is not None and timeout <= 0 else _hub_that_can_wait()
        if hub is not None:
            readers, writers = [], []
            for key in self.get_map().values():  # type: ignore[attr-defined]  # the base's
                if key.events & _selectors.EVENT_READ:
                    readers.append(key.fd)
                if key.events & _selectors.EVENT_WRITE:
                    writers.append(key.fd)
            if readers or writers:
                _wait_any(hub, readers, writers, timeout)
            else:
                hub.park(timeout)
            timeout = 0
        return list(super().select(timeout))  # type: ignore[misc]  # the stdlib base's


def _cooperative_selectors() -> dict[str, type]:
    """The stdlib selector classes this platform has, each with ``_CooperativeSelect``
    in front and the stdlib's name; and ``DefaultSelector`` the cooperative
    counterpart of the stdlib's choice."""
    classes: dict[str, type] = {}
    for name in ("SelectSelector", "PollSelector", "EpollSelector", "DevpollSelector",
                 "KqueueSelector"):
        base = getattr(_selectors, name, None)
        if base is not None:
            classes[name] = type(name, (_CooperativeSelect, base),
                                 {"__qualname__": name, "__doc__": base.__doc__})
    classes["DefaultSelector"] = classes[_selectors.DefaultSelector.__name__]
    return classes


#: selectors' name -> its cooperative class (patch_select puts them in place)
_COOPERATIVE_SELECTORS = _cooperative_selectors()
