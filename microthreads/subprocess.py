"""A drop-in for the stdlib ``subprocess`` module whose waits park the tasklet.

::

    from microthreads import subprocess
    out = subprocess.check_output(["git", "log", "-1"], timeout=10)   # others run meanwhile

``Popen`` subclasses the stdlib class: starting a child is the stdlib's own
fork/exec (fast: the parent waits only until the child has exec'd; a slow
``preexec_fn`` would hold the hub, so don't give one). What follows
cooperates: ``wait``, ``communicate`` and reads and writes on the ``stdin``,
``stdout`` and ``stderr`` pipes park the calling tasklet while the hub runs
the others; ``run``, ``call``, ``check_call``, ``check_output``,
``getoutput`` and ``getstatusoutput`` are built on them. Everything else
(``PIPE``, ``DEVNULL``, ``STDOUT``, ``CompletedProcess``, the exceptions)
is the stdlib's own object.

How a child's exit is noticed, without polling and without touching
anyone else's children (never ``waitpid(-1)``): on Linux 5.3+ a pidfd
(``os.pidfd_open``) watched by the hub; elsewhere, from a hub in the main
thread, a SIGCHLD handler (installed while children are watched, the
previous one chained and restored) that wakes the hub, which then asks
each of its own children with ``waitpid(pid, WNOHANG)``. As a last resort
(no pidfd, a hub outside the main thread) a timer asks every 20 ms. The
environment variable ``MICROTHREADS_CHILD_WATCHER`` (``pidfd``, ``sigchld``
or ``poll``) forces one, for tests. A child is reaped by the hub as soon
as it exits, whether or not anyone is waiting, so a tasklet killed while
it waits leaves no zombie; until then it counts as work for ``run()``
with no function. Return codes are the stdlib's: negative for a signal.
"""

from __future__ import annotations

import errno
import io
import os
import signal
import subprocess as _std
import threading
from collections.abc import Sequence
from typing import Any, AnyStr, Callable, TypeVar

from . import nonblocking
from .env import env_choice
from .hub import Hub, get_hub
from .nonblocking import READABLE, WRITABLE, deadline_after, remaining
from .sync import Event
from .tasklet import Tasklet, joinall, killall, spawn

PIPE = _std.PIPE
STDOUT = _std.STDOUT
DEVNULL = _std.DEVNULL
SubprocessError = _std.SubprocessError
CalledProcessError = _std.CalledProcessError
TimeoutExpired = _std.TimeoutExpired
CompletedProcess = _std.CompletedProcess
list2cmdline = _std.list2cmdline

__all__ = ["DEVNULL", "PIPE", "STDOUT", "CalledProcessError", "CompletedProcess", "Popen",
           "SubprocessError", "TimeoutExpired", "call", "check_call", "check_output",
           "getoutput", "getstatusoutput", "run"]

#: How much one read of a pipe asks for (a Linux pipe holds 64 KiB by default).
READ_SIZE = 65536
T = TypeVar("T")
#: The last-resort watcher's interval, in seconds.
POLL_INTERVAL = 0.02

# ------------------------------------------------------------------ pipes


class _PipeEnd(io.RawIOBase):
    """Our end of a pipe to a child: non-blocking, and a wait parks the tasklet.

    Wraps the stdlib's ``FileIO`` (which keeps owning the descriptor). One
    reader and one writer may wait at a time (the hub's rule); ``close()``
    from another tasklet wakes a waiter with ``OSError(EBADF)``.
    """

    def __init__(self, file: io.FileIO, hub: Hub) -> None:
        super().__init__()
        self._file = file
        self._fd = file.fileno()
        self._hub = hub
        os.set_blocking(self._fd, False)

    def fileno(self) -> int:
        return self._fd

    @property
    def name(self) -> int:
        return self._fd

    def readable(self) -> bool:
        return self._file.readable()

    def writable(self) -> bool:
        return self._file.writable()

    def _io(self, writable: bool, operation: Callable[..., T], *args: Any) -> T:
        """``operation(self._fd, *args)`` (an ``os`` call), waiting while the pipe would block.

        ValueError once closed, as for any closed file (the descriptor
        number may already belong to another file).
        """
        if self.closed:
            raise ValueError("I/O operation on closed pipe")
        return nonblocking.call(self._hub, self._fd, writable, None, operation, self._fd, *args)

    def readinto(self, buffer: Any) -> int:
        """Read into ``buffer``; 0 at EOF. Waits only while the pipe is empty."""
        return self._io(READABLE, os.readv, [buffer])

    def readall(self) -> bytes:
        """Everything up to EOF, READ_SIZE at a time."""
        chunks: list[bytes] = []
        while True:
            chunk = self._io(READABLE, os.read, READ_SIZE)
            if not chunk:
                return b"".join(chunks)
            chunks.append(chunk)

    def write(self, data: Any) -> int:
        """Write what the pipe takes now (at least one byte); the count.

        Waits only while the pipe is full. BrokenPipeError once the child's
        end is closed.
        """
        return self._io(WRITABLE, os.write, data)

    def write_all(self, data: bytes) -> None:
        view = memoryview(data).cast("B")
        while view:
            view = view[self.write(view):]

    def close(self) -> None:
        """Close our end; a tasklet waiting on it gets ``OSError(EBADF)``."""
        if self.closed:
            return
        self._hub.close_fd(self._fd, OSError(errno.EBADF, f"pipe fd {self._fd} was closed"))
        try:
            self._file.close()
        finally:
            super().close()


def _pipe_end(stream: Any) -> _PipeEnd:
    """The ``_PipeEnd`` under one of our Popen's streams (text, buffered or raw)."""
    while not isinstance(stream, _PipeEnd):
        stream = stream.raw if hasattr(stream, "raw") else stream.buffer
    return stream


def _cooperative(stream: Any, bufsize: int, hub: Hub) -> Any:
    """The same stream over a ``_PipeEnd``: text over buffered over raw, as the stdlib made it.

    The stdlib's objects are detached (so they no longer own the descriptor).
    """
    text = stream if isinstance(stream, io.TextIOWrapper) else None
    raw = stream
    while not isinstance(raw, io.FileIO):
        raw = raw.detach()
    pipe = _PipeEnd(raw, hub)
    new: Any = pipe
    if bufsize != 0:
        size = io.DEFAULT_BUFFER_SIZE if bufsize in (-1, 1) else bufsize
        new = io.BufferedWriter(pipe, size) if pipe.writable() else io.BufferedReader(pipe, size)
    if text is not None:
        new = io.TextIOWrapper(new, encoding=text.encoding, errors=text.errors,
                               line_buffering=text.line_buffering,
                               write_through=text.write_through)
    return new


# ----------------------------------------------------------------- Popen


class Popen(_std.Popen[Any]):
    """``subprocess.Popen`` whose waits and pipe I/O park the tasklet.

    Takes the stdlib's arguments. ``wait(timeout)`` raises ``TimeoutExpired``
    when time runs out, after which the child can still be killed and
    waited for. ``communicate(input, timeout)`` feeds stdin and drains
    stdout and stderr in tasklets of their own, so no amount of input and
    output can deadlock; on ``TimeoutExpired`` they go on, and a later
    ``communicate()`` returns everything (as the stdlib's). ``poll``,
    ``send_signal``, ``terminate`` and ``kill`` never wait. A Popen belongs
    to the hub of the thread that made it.
    """

    def __init__(self, args: Any, bufsize: int = -1, *more: Any, **kwargs: Any) -> None:
        watcher = _watcher_kind()             # a bad value is refused before any fork
        self._hub = get_hub()
        self._exited = Event()
        self._pidfd: int | None = None
        self._communicators: list[Tasklet] | None = None
        self._communicated: dict[str, Any] = {}
        super().__init__(args, bufsize, *more, **kwargs)   # fork and exec: the stdlib's
        for name in ("stdin", "stdout", "stderr"):
            stream = getattr(self, name)
            if stream is not None:
                setattr(self, name, _cooperative(stream, bufsize, self._hub))
        _watch(self, watcher)

    # --------------------------------------------------------------- waiting

    def _wait(self, timeout: float | None) -> int:
        """Park until the child has exited and been reaped; its return code.

        Called by the stdlib's ``wait()`` (and ``__exit__``). Raises
        TimeoutExpired after ``timeout`` seconds (hub clock).
        """
        if self.returncode is None and not self._exited.wait(timeout):
            raise TimeoutExpired(self.args, timeout or 0.0)   # only a timeout stops it short
        assert self.returncode is not None
        return self.returncode

    def _exit_seen(self) -> bool:
        """On the hub: reap the child if it has exited; True (and waiters woken) if so."""
        if self.poll() is None:
            return False
        self._exited.set()
        return True

    # ---------------------------------------------------------- communicate

    def communicate(self, input: AnyStr | None = None,
                    timeout: float | None = None) -> tuple[Any, Any]:
        """Send ``input`` to stdin (then close it), read stdout and stderr to EOF,
        wait for the child to exit; return ``(stdout, stderr)``.

        Each is None unless that stream is a PIPE; str in text mode. Input
        and output run in tasklets of their own, so a child that writes
        before it reads cannot deadlock. Raises TimeoutExpired after
        ``timeout`` seconds: the child and those tasklets go on, and calling
        ``communicate()`` again (after ``kill()``, say) returns all the
        output. A child that closes its stdin early is not an error. If the
        calling tasklet is killed, the feeding and draining tasklets are
        killed too. ValueError if input is given after communication began.
        """
        if self._communicators is not None and input:
            raise ValueError("Cannot send input after starting communication")
        if self._communicators is None:
            self._communicators = self._start_communicating(input)
        hub = self._hub
        deadline = deadline_after(hub, timeout)
        try:
            if len(joinall(self._communicators, timeout)) < len(self._communicators):
                raise TimeoutExpired(self.args, timeout or 0.0)   # only a timeout stops it short
            for tasklet in self._communicators:
                if tasklet.exception is not None:
                    raise tasklet.exception
            self.wait(remaining(hub, deadline))
        except TimeoutExpired:
            raise
        except BaseException:
            killall(self._communicators)
            raise
        return self._communicated.get("stdout"), self._communicated.get("stderr")

    def _start_communicating(self, input: AnyStr | None) -> list[Tasklet]:
        tasklets = []
        if self.stdin is not None:
            tasklets.append(spawn(self._feed, input))
        for name in ("stdout", "stderr"):
            if getattr(self, name) is not None:
                tasklets.append(spawn(self._drain, name))
        for tasklet in tasklets:
            tasklet.name = f"communicate with pid {self.pid}"
        return tasklets

    def _feed(self, input: AnyStr | None) -> None:
        stdin: Any = self.stdin
        try:
            stdin.flush()                     # what the caller wrote before
            if input:
                data = input.encode(stdin.encoding, stdin.errors) \
                    if isinstance(input, str) else input
                _pipe_end(stdin).write_all(data)
        except BrokenPipeError:
            pass                              # the child does not want it all: not an error
        try:
            stdin.close()
        except BrokenPipeError:
            pass

    def _drain(self, name: str) -> None:
        stream = getattr(self, name)
        data = _pipe_end(stream).readall()
        stream.close()
        if isinstance(stream, io.TextIOWrapper):
            text = data.decode(stream.encoding, stream.errors or "strict")
            self._communicated[name] = text.replace("\r\n", "\n").replace("\r", "\n")
        else:
            self._communicated[name] = data


# --------------------------------------------------------- child watchers


def _watcher_kind() -> str:
    """``MICROTHREADS_CHILD_WATCHER``: "" (the best there is), pidfd, sigchld or poll."""
    return env_choice("MICROTHREADS_CHILD_WATCHER", ("pidfd", "sigchld", "poll")) or ""


def _watch(popen: Popen, kind: str) -> None:
    """Make sure ``popen``'s exit wakes its hub (and reaps it), with the watcher
    ``kind`` asks for (``_watcher_kind``)."""
    if kind in ("", "pidfd") and hasattr(os, "pidfd_open"):
        try:
            _watch_pidfd(popen)
            return
        except OSError:
            pass                              # an old kernel (ENOSYS), a sandbox (EPERM)
    if kind in ("", "pidfd", "sigchld") and threading.current_thread() is threading.main_thread():
        _sigchld.watch(popen)
        return
    _watch_by_timer(popen, POLL_INTERVAL)


def _watch_pidfd(popen: Popen) -> None:
    """Linux 5.3+: a pidfd is readable once the child has exited."""
    hub = popen._hub
    fd = os.pidfd_open(popen.pid)

    def exited() -> None:
        if popen._exit_seen():
            hub.close_fd(fd, OSError(errno.EBADF, f"pidfd {fd} was closed"))
            os.close(fd)

    hub.add_reader(fd, exited)


def _watch_by_timer(popen: Popen, interval: float) -> None:
    """The last resort: ask every ``interval`` seconds."""
    def check() -> None:
        if not popen._exit_seen():
            popen._hub.call_later(interval, check)

    popen._hub.call_soon(check)


class _SigchldWatcher:
    """Process-wide: a SIGCHLD handler, installed while children are watched.

    The handler runs in the main thread (the hub's wake-up fd has already
    woken its poll); it asks each hub with children to check them, on that
    hub, with ``waitpid(pid, WNOHANG)`` per child. The handler that was
    there before is called too, and put back when no child is left.
    """

    def __init__(self) -> None:
        self._children: dict[Hub, set[Popen]] = {}
        self._previous: Any = None
        self._installed = False

    def watch(self, popen: Popen) -> None:
        hub = popen._hub
        if not self._installed:
            self._previous = signal.signal(signal.SIGCHLD, self._on_sigchld)
            self._installed = True
        self._children.setdefault(hub, set()).add(popen)
        hub.call_soon(self._check, hub)      # it may have exited before the handler was in

    def _on_sigchld(self, signum: int, frame: Any) -> None:
        for hub in list(self._children):
            hub.call_soon_threadsafe(self._check, hub)
        previous = self._previous
        if callable(previous):
            previous(signum, frame)

    def _check(self, hub: Hub) -> None:
        children = self._children.get(hub)
        if not children:
            return
        for popen in list(children):
            if popen._exit_seen():
                children.discard(popen)
        if not children:
            del self._children[hub]
        if not self._children and self._installed and \
                threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGCHLD, self._previous)   # deadlock detection works again
            self._installed = False


_sigchld = _SigchldWatcher()


# -------------------------------------------------------- the short forms


def run(*popenargs: Any, input: AnyStr | None = None,
        capture_output: bool = False, timeout: float | None = None, check: bool = False,
        **kwargs: Any) -> CompletedProcess[Any]:
    """Run a command and wait for it; a ``CompletedProcess``, as the stdlib's.

    ``input`` goes to its stdin; ``capture_output`` pipes stdout and stderr;
    on ``timeout`` the child is killed and reaped, then ``TimeoutExpired``
    (with what was output so far) is raised; ``check`` raises
    ``CalledProcessError`` for a non-zero return code. If the calling
    tasklet is killed meanwhile, the child is killed and reaped.
    """
    if input is not None:
        if kwargs.get("stdin") is not None:
            raise ValueError("stdin and input arguments may not both be used.")
        kwargs["stdin"] = PIPE
    if capture_output:
        if kwargs.get("stdout") is not None or kwargs.get("stderr") is not None:
            raise ValueError("stdout and stderr arguments may not be used with capture_output.")
        kwargs["stdout"] = kwargs["stderr"] = PIPE
    with Popen(*popenargs, **kwargs) as process:
        try:
            stdout, stderr = process.communicate(input, timeout=timeout)
        except TimeoutExpired as exc:
            process.kill()
            exc.stdout, exc.stderr = process.communicate()
            raise
        except BaseException:
            process.kill()                    # then __exit__ reaps it
            raise
        returncode = process.returncode      # communicate() waited for it
        assert returncode is not None
        if check and returncode:
            raise CalledProcessError(returncode, process.args, output=stdout, stderr=stderr)
    return CompletedProcess(process.args, returncode, stdout, stderr)


def call(*popenargs: Any, timeout: float | None = None, **kwargs: Any) -> int:
    """Run a command and wait for it; its return code. The child is killed on
    timeout (TimeoutExpired) or if the calling tasklet is killed."""
    with Popen(*popenargs, **kwargs) as process:
        try:
            return process.wait(timeout=timeout)
        except BaseException:
            process.kill()
            raise


def check_call(*popenargs: Any, **kwargs: Any) -> int:
    """``call()``, raising CalledProcessError for a non-zero return code; else 0."""
    returncode = call(*popenargs, **kwargs)
    if returncode:
        command: Any = kwargs.get("args", popenargs[0] if popenargs else None)
        raise CalledProcessError(returncode, command)
    return 0


def check_output(*popenargs: Any, timeout: float | None = None, **kwargs: Any) -> Any:
    """A command's stdout (bytes, or str in text mode); CalledProcessError
    (with the output) for a non-zero return code."""
    if "stdout" in kwargs:
        raise ValueError("stdout argument not allowed, it will be overridden.")
    if "input" in kwargs and kwargs["input"] is None:
        kwargs["input"] = "" if kwargs.get("text") or kwargs.get("universal_newlines") or \
            kwargs.get("encoding") or kwargs.get("errors") else b""
    return run(*popenargs, stdout=PIPE, timeout=timeout, check=True, **kwargs).stdout


def getstatusoutput(cmd: str | bytes | Sequence[Any]) -> tuple[int, str]:
    """``(exitcode, output)`` of ``cmd`` run by the shell, as the stdlib's."""
    try:
        data = check_output(cmd, shell=True, text=True, stderr=STDOUT)
        exitcode = 0
    except CalledProcessError as exc:
        data = exc.output
        exitcode = exc.returncode
    if data[-1:] == "\n":
        data = data[:-1]
    return exitcode, data


def getoutput(cmd: str | bytes | Sequence[Any]) -> str:
    """The output (stdout and stderr) of ``cmd`` run by the shell, as the stdlib's."""
    return getstatusoutput(cmd)[1]

