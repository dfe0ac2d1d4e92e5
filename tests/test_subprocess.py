"""microthreads.subprocess: the stdlib's surface, with waits and pipe I/O that park.

Every test runs under each way of noticing a child's exit: a pidfd (Linux
5.3+) and the SIGCHLD fallback (forced by MICROTHREADS_CHILD_WATCHER).
"""

import os
import signal
import sys
import threading
import time

import pytest

import microthreads
from microthreads import subprocess

LIMIT = 20                                     # no test here may take longer (real seconds)

HAS_PIDFD = hasattr(os, "pidfd_open")
if HAS_PIDFD:
    try:
        os.close(os.pidfd_open(os.getpid()))
    except OSError:
        HAS_PIDFD = False


@pytest.fixture(autouse=True, params=["pidfd", "sigchld"])
def child_watcher(request, monkeypatch):
    if request.param == "pidfd" and not HAS_PIDFD:
        pytest.skip("no pidfd here (Linux 5.3+)")
    if request.param == "sigchld" and threading.current_thread() is not threading.main_thread():
        pytest.skip("SIGCHLD is handled in the main thread only")
    monkeypatch.setenv("MICROTHREADS_CHILD_WATCHER", request.param)
    before = signal.getsignal(signal.SIGCHLD)
    yield request.param
    assert signal.getsignal(signal.SIGCHLD) == before      # put back once no child is left


def run(main, *args):
    return microthreads.run(microthreads.with_timeout, LIMIT, main, *args)


def gone(pid):
    """True once ``pid`` is neither running nor a zombie."""
    return not os.path.exists(f"/proc/{pid}")


def wait_until_gone(pid, seconds=5.0):
    deadline = time.monotonic() + seconds
    while not gone(pid) and time.monotonic() < deadline:
        microthreads.sleep(0.01)
    return gone(pid)


def test_fifty_sleeping_children_run_at_once_while_a_ticker_ticks():
    ticks = []

    def ticker():
        while True:
            ticks.append(time.monotonic())
            microthreads.sleep(0.05)

    def main():
        tick = microthreads.spawn(ticker)
        started = time.monotonic()
        children = [subprocess.Popen(["sleep", "0.5"]) for _ in range(50)]
        codes = [child.wait() for child in children]
        elapsed = time.monotonic() - started
        tick.kill()
        return codes, elapsed

    codes, elapsed = run(main)
    assert codes == [0] * 50
    assert elapsed < 50 * 0.5 / 3              # serially: 25 s; together: about 0.5 s
    assert len(ticks) >= 3                      # the hub kept running meanwhile


def test_communicate_moves_ten_mebibytes_each_way_without_deadlock():
    data = os.urandom(1 << 20) * 10

    def main():
        child = subprocess.Popen(["cat"], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        return child.communicate(data), child.returncode

    (out, err), code = run(main)
    assert out == data and err is None and code == 0


def test_a_wait_timeout_raises_timeout_expired_and_the_child_can_still_be_killed_and_reaped(
        virtual_clock):
    # the virtual clock jumps over the timeout; the child's real exit wakes the last wait
    def main():
        child = subprocess.Popen(["sleep", "30"])
        with pytest.raises(subprocess.TimeoutExpired) as raised:
            child.wait(timeout=2)
        timed_out_at = virtual_clock.now()
        assert child.poll() is None
        child.kill()
        return raised.value.timeout, timed_out_at, child.wait(), child.pid

    timeout, at, code, pid = microthreads.run(main)
    assert (timeout, at, code) == (2, 2.0, -signal.SIGKILL) and gone(pid)


def test_a_communicate_timeout_keeps_the_output_for_the_next_call(tmp_path):
    marker = tmp_path / "written"

    def main():
        child = subprocess.Popen(["sh", "-c", f"echo early; touch {marker}; exec sleep 30"],
                                 stdout=subprocess.PIPE)
        while not marker.exists():                 # "early" is in the pipe now
            microthreads.sleep(0.01)
        with pytest.raises(subprocess.TimeoutExpired):
            child.communicate(timeout=0.1)
        child.kill()
        return child.communicate(), child.returncode

    assert run(main) == ((b"early\n", None), -signal.SIGKILL)


def test_run_with_a_timeout_kills_the_child_and_reports_its_output():
    def main():
        with pytest.raises(subprocess.TimeoutExpired) as raised:
            subprocess.run(["sh", "-c", "echo partial; exec sleep 30"], capture_output=True,
                           timeout=1.0)
        return raised.value.stdout

    assert run(main) == b"partial\n"


def test_a_tasklet_killed_while_it_waits_leaves_no_zombie(tmp_path):
    pidfile = tmp_path / "pid"

    def runs_a_child():                         # run(): the child is killed with the tasklet
        subprocess.run(["sh", "-c", f"echo $$ > {pidfile}; exec sleep 30"])

    def waits_on_a_child(child):                # Popen.wait(): the child goes on, then is reaped
        child.wait()

    def main():
        runner = microthreads.spawn(runs_a_child)
        short = subprocess.Popen(["sleep", "0.2"])
        waiter = microthreads.spawn(waits_on_a_child, short)
        while not pidfile.exists() or not pidfile.read_text().strip():
            microthreads.sleep(0.01)
        long_pid = int(pidfile.read_text())
        runner.kill()                           # returns once the runner has ended
        killed_gone = gone(long_pid)
        waiter.kill()
        assert not gone(short.pid)              # still running: nobody waits for it now
        return killed_gone, wait_until_gone(short.pid)

    assert run(main) == (True, True)


def test_signals_give_negative_return_codes_as_the_stdlib():
    def main():
        terminated = subprocess.Popen(["sleep", "30"])
        terminated.terminate()
        signalled = subprocess.Popen(["sleep", "30"])
        signalled.send_signal(signal.SIGUSR1)
        # SIGKILL: a shell started under nohup ignores SIGHUP, and may not trap it back
        itself = subprocess.run(["sh", "-c", "kill -KILL $$"])
        return terminated.wait(), signalled.wait(), itself.returncode

    assert run(main) == (-signal.SIGTERM, -signal.SIGUSR1, -signal.SIGKILL)


def test_reading_a_pipe_parks_only_the_reader():
    events = []

    def ticker():
        for n in range(3):
            events.append(f"tick {n}")
            microthreads.sleep(0.01)

    def main():
        child = subprocess.Popen(["sh", "-c", "read line; echo \"got $line\""],
                                 stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        with child:
            reader = microthreads.spawn(child.stdout.readline)
            microthreads.spawn(ticker).join()   # the reader waits; the hub runs on
            child.stdin.write("hello\n")
            child.stdin.flush()
            events.append(reader.get())
        return child.returncode

    assert run(main) == 0
    assert events == ["tick 0", "tick 1", "tick 2", "got hello\n"]


def test_the_short_forms_behave_as_the_stdlib():
    def main():
        assert subprocess.call(["sh", "-c", "exit 3"]) == 3
        assert subprocess.check_call(["true"]) == 0
        with pytest.raises(subprocess.CalledProcessError) as raised:
            subprocess.check_call(["sh", "-c", "exit 4"])
        assert raised.value.returncode == 4
        merged = subprocess.check_output(["sh", "-c", "echo out; echo err >&2"],
                                         stderr=subprocess.STDOUT, text=True)
        with pytest.raises(subprocess.CalledProcessError) as failed:
            subprocess.check_output(["sh", "-c", "echo why; exit 5"])
        fed = subprocess.run(["tr", "a-z", "A-Z"], input="shout", capture_output=True,
                             text=True, check=True)
        quiet = subprocess.run([sys.executable, "-c", "print('x')"], stdout=subprocess.DEVNULL)
        return (merged, failed.value.output, failed.value.returncode, fed.stdout,
                quiet.stdout, quiet.returncode, subprocess.getstatusoutput("echo hi; exit 2"))

    assert run(main) == ("out\nerr\n", b"why\n", 5, "SHOUT", None, 0, (2, "hi"))


def test_a_child_that_does_not_read_its_input_is_not_an_error():
    def main():
        child = subprocess.Popen(["true"], stdin=subprocess.PIPE)
        return child.communicate(b"x" * (1 << 20))

    assert run(main) == (None, None)


def test_a_missing_program_raises_at_once_as_the_stdlib():
    def main():
        with pytest.raises(FileNotFoundError):
            subprocess.Popen(["/nonexistent/program"])

    run(main)
