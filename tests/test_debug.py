"""Seeing inside: format_run_info, the blocked-hub watchdog, the warning at exit."""

import logging
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

import microthreads

ROOT = Path(__file__).resolve().parent.parent


def run_script(tmp_path, source, *python_options, env=None):
    """``source`` as a script in a fresh interpreter: its CompletedProcess (text)."""
    script = tmp_path / "script.py"
    script.write_text(textwrap.dedent(source))
    return subprocess.run([sys.executable, *python_options, str(script)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60)


def next_line():
    return sys._getframe(1).f_lineno + 1


def test_format_run_info_lists_every_live_tasklet_with_its_name_state_and_stack():
    event = microthreads.Event()
    lines = {}

    def waiting_for_event():
        lines["waiting"] = next_line()
        event.wait()

    def main():
        microthreads.spawn(waiting_for_event).name = "consumer"
        microthreads.spawn(print).name = "newcomer"
        microthreads.getcurrent().name = "reporter"
        microthreads.sleep(0)
        lines["reporter"] = next_line()
        info = microthreads.format_run_info()
        event.set()
        return info

    info = microthreads.run(main)
    blocks = info.split("\n<Tasklet ")
    assert blocks[0].startswith("<Hub ")
    assert [block.split(">")[0] for block in blocks[1:]] == [
        "'consumer' waiting", "'reporter' running"]            # sorted by name
    consumer, reporter = blocks[1:]
    assert f'File "{__file__}", line {lines["waiting"]}, in waiting_for_event' in consumer
    assert "event.wait()" in consumer
    assert f'File "{__file__}", line {lines["reporter"]}, in main' in reporter


def test_format_run_info_shows_a_tasklet_not_started_yet():
    def main():
        tasklet = microthreads.spawn(print)
        tasklet.name = "later"
        info = microthreads.format_run_info()
        tasklet.kill()
        return info

    info = microthreads.run(main)
    assert "<Tasklet 'later' not started>\n  not started: <built-in function print>" in info


def test_the_watchdog_reports_the_stack_of_a_tasklet_holding_the_hub(caplog):
    caplog.set_level(logging.WARNING, logger="microthreads")
    hub = microthreads.get_hub()

    def reported():
        return any("watchdog" in r.getMessage() for r in caplog.records)

    def hog_the_hub():
        give_up = time.monotonic() + 5            # a bound, should the watchdog fail
        while not reported() and time.monotonic() < give_up:
            sum(range(1000))                      # busy, never yielding

    assert hub.watchdog(50) is not None
    try:
        microthreads.run(hog_the_hub)
    finally:
        hub.watchdog(0)
    [record] = [r for r in caplog.records if "watchdog" in r.getMessage()]
    assert record.levelname == "WARNING"
    message = record.getMessage()
    assert message.startswith("microthreads watchdog: tasklet 'test_the_watchdog_reports_the"
                              "_stack_of_a_tasklet_holding_the_hub.<locals>.hog_the_hub' has"
                              " held the hub for over 50 ms, at:\n")
    assert "in hog_the_hub" in message


def test_watchdog_zero_turns_it_off():
    assert microthreads.get_hub().watchdog(0) is None


def test_the_watchdog_leaves_the_hosts_own_code_between_runs_alone(caplog):
    caplog.set_level(logging.WARNING, logger="microthreads")
    hub = microthreads.get_hub()

    def reports():
        return [r for r in caplog.records if "watchdog" in r.getMessage()]

    def busy(seconds):
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            sum(range(1000))

    def hog_until_reported():
        give_up = time.monotonic() + 5            # a bound, should the watchdog fail
        while not reports() and time.monotonic() < give_up:
            sum(range(1000))

    watchdog = hub.watchdog(20)
    try:
        microthreads.run(lambda: None)
        busy(0.2)                                 # the host's code: 10 thresholds long
        microthreads.run(lambda: None)
        assert reports() == []
        microthreads.run(hog_until_reported)      # the same watchdog still sees a tasklet
    finally:
        hub.watchdog(0)
    assert watchdog.reports == 1
    assert "in hog_until_reported" in reports()[0].getMessage()


def test_a_script_that_spawns_and_ends_without_run_is_warned_naming_the_tasklets(tmp_path):
    done = run_script(tmp_path, """\
        import microthreads
        from microthreads import net

        def worker():
            print("worked")

        microthreads.spawn(worker)
        net.StreamServer(("127.0.0.1", 0), print).start()
    """)
    assert done.returncode == 0
    assert done.stdout == ""
    [warning, source] = done.stderr.splitlines()
    assert warning.startswith(f"{tmp_path / 'script.py'}:4: NeverRanWarning: 2 tasklets were"
                              " spawned but never ran ('worker', 'accept 127.0.0.1:")
    assert warning.endswith("'): the program ended without running the hub; call"
                            " microthreads.run() (it returns when they are done)")
    assert source.strip() == "def worker():"


@pytest.mark.parametrize("source", [
    "microthreads.spawn(print, 'ran'); microthreads.run()",
    "microthreads.run(lambda: microthreads.spawn(print, 'left behind'))",
    "print('ran')",
    "import warnings; warnings.simplefilter('ignore', microthreads.NeverRanWarning);"
    " microthreads.spawn(print)",
])
def test_no_warning_when_the_hub_ran_or_nothing_was_spawned_or_it_is_filtered(tmp_path,
                                                                              source):
    done = run_script(tmp_path, f"import microthreads\n{source}\n")
    assert (done.returncode, done.stderr) == (0, "")


def test_the_watchdog_names_the_tasklet_and_starts_at_its_code_on_stderr(tmp_path):
    done = run_script(tmp_path, """\
        import time
        import microthreads

        def hog():
            end = time.monotonic() + 0.3      # the watchdog's threshold is 50 ms
            while time.monotonic() < end: pass

        def main():
            microthreads.spawn(hog).name = "the hog"
            microthreads.sleep(0.01)

        microthreads.run(main)
    """, env={**os.environ, "MICROTHREADS_WATCHDOG_MS": "50"})
    assert done.returncode == 0
    lines = done.stderr.splitlines()
    assert lines[0] == ("microthreads watchdog: tasklet 'the hog' has held the hub for"
                        " over 50 ms, at:")
    assert lines[1] == f'  File "{tmp_path / "script.py"}", line 6, in hog'
    assert lines[2].strip() == "while time.monotonic() < end: pass"


def test_the_watchdog_reports_through_logging_when_it_has_a_handler(tmp_path):
    done = run_script(tmp_path, """\
        import logging
        import time
        import microthreads

        def hog():
            end = time.monotonic() + 0.3
            while time.monotonic() < end: pass

        logging.basicConfig(format="%(levelname)s %(name)s: %(message)s")
        microthreads.run(hog)
    """, env={**os.environ, "MICROTHREADS_WATCHDOG_MS": "50"})
    lines = done.stderr.splitlines()
    assert lines[0] == ("WARNING microthreads: microthreads watchdog: tasklet 'hog' has"
                        " held the hub for over 50 ms, at:")
    assert lines[1].endswith(", in hog")


def test_the_watchdog_names_the_hub_for_a_callback_that_holds_it(caplog):
    caplog.set_level(logging.WARNING, logger="microthreads")
    hub = microthreads.get_hub()

    def reports():
        return [r.getMessage() for r in caplog.records if "watchdog" in r.getMessage()]

    def hog_in_a_callback():
        give_up = time.monotonic() + 5            # a bound, should the watchdog fail
        while not reports() and time.monotonic() < give_up:
            sum(range(1000))

    hub.watchdog(50)
    try:
        microthreads.run(lambda: (hub.call_soon(hog_in_a_callback), microthreads.sleep(0.01)))
    finally:
        hub.watchdog(0)
    [message] = reports()
    assert message.startswith("microthreads watchdog: the hub's own greenlet (a callback) has"
                              " held the hub for over 50 ms, at:\n")
    assert message.splitlines()[1].endswith(", in hog_in_a_callback")
