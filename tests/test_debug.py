"""Seeing inside: format_run_info and the blocked-hub watchdog."""

import logging
import sys
import time

import microthreads


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
    assert "the hub has been held for over 50 ms by:" in message
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
