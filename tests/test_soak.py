"""The short soak (about 20 s of chat and churn against a real chat server), and
the soak's own checker, fed streams with a known fault, so a pass means something.

``make soak`` runs the long one (``tests/soak.py``, 120 s by default).
"""

import pytest
import soak


def observers_of(members, sent):
    """A Soak with no server, and its observers in their windows; ``sent[i]`` is
    how many numbered lines member i sent."""
    run = soak.Soak(server=None, members=members, pausers=0)
    for index in range(members):
        observer = soak.Observer(run, index)
        observer.in_window = True
        observer.last = {b"m%d" % i: 0 for i in range(members)}
        observer.sent = sent[index]
        observer.ends = members
        run.observers.append(observer)
    return run


def feed(observer, *lines):
    for line in lines:
        observer.check(line)


def test_the_checker_passes_two_identical_streams():
    run = observers_of(2, [2, 1])
    for observer in run.observers:
        feed(observer, b"m0 says: 1 x", b"m1 says: 1 y", b"m0 says: 2 z")
    run.tally()
    assert (run.report.lost, run.report.misordered, run.report.problems) == (0, 0, [])
    assert run.report.delivered == 6
    assert run.positions == {}               # every line seen by all: nothing kept


def test_the_checker_counts_a_line_missing_in_the_middle():
    run = observers_of(2, [3, 0])
    first, second = run.observers
    feed(first, b"m0 says: 1 x", b"m0 says: 2 x", b"m0 says: 3 x")
    feed(second, b"m0 says: 1 x", b"m0 says: 3 x")
    run.tally()
    assert (run.report.lost, run.report.misordered) == (1, 0)


def test_the_checker_counts_lines_missing_at_the_end():
    run = observers_of(2, [3, 0])
    first, second = run.observers
    feed(first, b"m0 says: 1 x", b"m0 says: 2 x", b"m0 says: 3 x")
    feed(second, b"m0 says: 1 x")
    run.tally()
    assert (run.report.lost, run.report.misordered) == (2, 0)


def test_the_checker_counts_two_observers_that_disagree_on_the_order():
    run = observers_of(2, [1, 1])
    first, second = run.observers
    feed(first, b"m0 says: 1 x", b"m1 says: 1 y")
    feed(second, b"m1 says: 1 y", b"m0 says: 1 x")
    run.tally()
    assert run.report.misordered == 1
    assert run.report.lost == 0


def test_the_checker_counts_a_repeated_line_and_a_sender_out_of_order():
    run = observers_of(1, [3])
    feed(run.observers[0], b"m0 says: 1 x", b"m0 says: 1 x", b"m0 says: 3 x",
         b"m0 says: 2 x")
    run.tally()
    assert run.report.misordered >= 2


def test_the_checker_holds_a_session_to_what_its_sender_saw_echoed():
    run = observers_of(2, [0, 0])
    session = run.sessions[b"c1"] = soak.Session(b"c1", "quit")
    session.sent, session.must_deliver = 2, True
    first, second = run.observers
    feed(first, b"c1 has joined the chat.", b"c1 says: 1 churn", b"c1 says: 2 churn",
         b"c1 has left the chat.")
    feed(second, b"c1 has joined the chat.", b"c1 says: 1 churn", b"c1 has left the chat.")
    run.tally()
    assert run.report.lost == 1


def test_the_checker_holds_an_abrupt_session_to_what_any_observer_saw():
    run = observers_of(2, [0, 0])
    session = run.sessions[b"c1"] = soak.Session(b"c1", "abrupt")
    session.sent = 3                         # reset before its echo: 0 to 3 may arrive
    first, second = run.observers
    feed(first, b"c1 has joined the chat.", b"c1 says: 1 churn", b"c1 has left the chat.")
    feed(second, b"c1 has joined the chat.", b"c1 has left the chat.")
    run.tally()
    assert run.report.lost == 1


def test_the_checker_counts_a_join_seen_by_some_observers_only_and_a_missing_leave():
    run = observers_of(2, [0, 0])
    run.sessions[b"c1"] = soak.Session(b"c1", "handle-vanish")
    first, _second = run.observers
    feed(first, b"c1 has joined the chat.")
    run.tally()
    assert run.report.lost == 2              # the other's join, and this one's leave


def test_the_report_fails_on_a_descriptor_leak_and_rss_growth():
    report = soak.Report(fds_start=8, fds_final=9, hub_start={"tasklets": 2},
                         hub_final={"tasklets": 3}, server_exit=0,
                         rss_kib={"start": 20000, "warm": 22000, "end": 40000})
    report.judge()
    assert not report.ok
    assert len(report.problems) == 3, report.problems


def test_rss_may_grow_by_what_extra_connections_cost_but_no_more():
    def verdict(end_kib, peak_fds):
        report = soak.Report(fds_start=8, fds_final=8, fds_warm=60, fds_peak_after_warm=peak_fds,
                             server_exit=0, rss_kib={"warm": 22000, "end": end_kib})
        return report.judge().ok

    assert verdict(22000 + 2048, peak_fds=60)
    assert not verdict(22000 + 2049, peak_fds=60)
    assert verdict(22000 + 2048 + 100 * 16, peak_fds=160)      # 100 more connections at once
    assert not verdict(22000 + 2049 + 100 * 16, peak_fds=160)


@pytest.mark.slow
def test_a_20_second_soak_loses_nothing_misorders_nothing_and_leaks_nothing():
    report = soak.run_soak(seconds=20, members=30, rate=5.0, churn=10.0, pausers=3)
    print(report.text())
    assert report.ok, report.text()
    # however loaded the machine, members chatted and sessions churned
    assert report.lines_sent > 1000 and report.delivered > 30 * 1000
    assert report.sessions_completed == report.sessions_started >= 50
