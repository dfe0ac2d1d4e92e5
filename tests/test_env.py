"""The MICROTHREADS_* environment variables: a value they do not accept is refused, by name."""

import os
import subprocess
import sys

import pytest

import microthreads


def _new_hub_fails(monkeypatch, name, value):
    monkeypatch.setenv(name, value)
    with pytest.raises(ValueError) as info:
        microthreads.Hub()
    return info.value


def test_a_watchdog_ms_that_is_not_a_number_is_refused_naming_the_variable(monkeypatch):
    error = _new_hub_fails(monkeypatch, "MICROTHREADS_WATCHDOG_MS", "abc")
    assert str(error) == ("environment variable MICROTHREADS_WATCHDOG_MS='abc' is not a number"
                          " of milliseconds (0: off) (0 or more; unset it for the default)")
    assert error.__context__ is None          # one error, not float()'s chained under it


def test_a_negative_watchdog_ms_is_refused(monkeypatch):
    assert "MICROTHREADS_WATCHDOG_MS='-5'" in str(
        _new_hub_fails(monkeypatch, "MICROTHREADS_WATCHDOG_MS", "-5"))


def test_an_unknown_poller_is_refused_naming_the_ones_there_are(monkeypatch):
    error = _new_hub_fails(monkeypatch, "MICROTHREADS_POLLER", "bogus")
    assert str(error) == ("environment variable MICROTHREADS_POLLER='bogus' is not one of"
                          " epoll, selectors (unset it for the default)")


@pytest.mark.parametrize("value", ["selectors", "SELECTORS", ""])
def test_a_known_poller_or_none_makes_a_working_hub(monkeypatch, value):
    monkeypatch.setenv("MICROTHREADS_POLLER", value)

    def main():
        microthreads.sleep(0.001)
        return "ran"

    microthreads.get_hub().close()            # the next hub reads the variable
    assert microthreads.run(main) == "ran"
    microthreads.get_hub().close()


def test_a_thread_count_that_is_not_a_whole_number_stops_the_import_saying_so():
    env = dict(os.environ, MICROTHREADS_THREADS="4.5")
    result = subprocess.run([sys.executable, "-c", "import microthreads"], env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert result.stderr.splitlines()[-1] == (
        "ValueError: environment variable MICROTHREADS_THREADS='4.5' is not a whole number"
        " of worker threads (0 or more; unset it for the default)")


def test_an_unknown_child_watcher_is_refused_before_a_child_is_started(monkeypatch):
    monkeypatch.setenv("MICROTHREADS_CHILD_WATCHER", "inotify")
    from microthreads import subprocess as cooperative

    def main():
        with pytest.raises(ValueError, match="MICROTHREADS_CHILD_WATCHER='inotify' is not one of"
                                             " pidfd, sigchld, poll"):
            cooperative.run([sys.executable, "-c", "pass"])

    microthreads.run(main)
