"""Group (members end before the block does) and Pool (at most size at once)."""

import pytest

import microthreads
from microthreads import Group, Pool


def crash_records(caplog):
    return [r for r in caplog.records if r.name == "microthreads"]


def test_a_group_block_ends_only_when_every_member_has_ended(virtual_clock):
    events = []

    def member(seconds):
        microthreads.sleep(seconds)
        events.append((seconds, virtual_clock.now()))

    def main():
        with Group() as group:
            members = [group.spawn(member, s) for s in (3, 1, 2)]
            events.append("body done")
        events.append(("block left", virtual_clock.now()))
        return [m.dead for m in members], len(group)

    assert microthreads.run(main) == ([True, True, True], 0)
    assert events == ["body done", (1, 1.0), (2, 2.0), (3, 3.0), ("block left", 3.0)]


def test_a_failing_member_kills_the_others_and_its_error_leaves_the_block_as_it_was(
        virtual_clock, caplog):
    events = []
    errors = []

    def failing():
        microthreads.sleep(1)
        error = ValueError("member failed")
        errors.append(error)
        raise error

    def patient(name):
        try:
            microthreads.sleep(60)
        except microthreads.TaskletExit:
            events.append((f"{name} killed", virtual_clock.now()))
            raise

    def main():
        try:
            with Group() as group:
                group.spawn(patient, "a")
                group.spawn(failing)
                group.spawn(patient, "b")
        except ValueError as exc:
            events.append(("raised", exc is errors[0], virtual_clock.now()))

    microthreads.run(main)
    assert events == [("a killed", 1.0), ("b killed", 1.0), ("raised", True, 1.0)]
    assert crash_records(caplog) == []         # raised, so not logged


def test_a_members_error_after_the_first_is_logged(virtual_clock, caplog):
    def failing():
        microthreads.sleep(1)
        raise ValueError("first")

    def fails_when_killed():
        try:
            microthreads.sleep(60)
        except microthreads.TaskletExit:
            raise KeyError("second") from None

    def main():
        with pytest.raises(ValueError, match="first"), Group() as group:
            group.spawn(failing)
            group.spawn(fails_when_killed).name = "second"

    microthreads.run(main)
    [record] = crash_records(caplog)
    assert record.getMessage() == \
        "Tasklet 'second' of a group failed after the group's first error:"
    assert record.exc_info[0] is KeyError


def test_a_failing_body_kills_the_members_and_its_error_propagates(virtual_clock, caplog):
    events = []

    def member():
        try:
            microthreads.sleep(60)
        except microthreads.TaskletExit:
            events.append(("member killed", virtual_clock.now()))
            raise

    def main():
        try:
            with Group() as group:
                killed = group.spawn(member)
                microthreads.sleep(2)
                raise RuntimeError("body failed")
        except RuntimeError as exc:
            events.append((str(exc), killed.dead, virtual_clock.now()))

    microthreads.run(main)
    assert events == [("member killed", 2.0), ("body failed", True, 2.0)]
    assert crash_records(caplog) == []


def test_a_failing_member_does_not_interrupt_the_body_before_the_block_ends(virtual_clock):
    events = []

    def failing():
        raise ValueError("member failed")

    def main():
        with pytest.raises(ValueError), Group() as group:
            group.spawn(failing)
            microthreads.sleep(5)
            events.append(("body goes on", virtual_clock.now()))
        events.append(("raised", virtual_clock.now()))

    microthreads.run(main)
    assert events == [("body goes on", 5.0), ("raised", 5.0)]


def test_a_group_outside_a_with_block_joins_and_kills_its_members(virtual_clock, caplog):
    def failing():
        raise ValueError("not owned")

    def main():
        group = Group()
        sleepers = [group.spawn(microthreads.sleep, 60) for _ in range(2)]
        crashed = group.spawn(failing)
        joined_in_time = group.join(timeout=1)
        membership = (len(group), all(s in group for s in sleepers), crashed in group)
        group.kill()
        return joined_in_time, membership, group.join(), [s.dead for s in sleepers]

    assert microthreads.run(main) == (False, (2, True, False), True, [True, True])
    assert len(crash_records(caplog)) == 1      # no with block owns it: logged at death


def test_a_tasklet_can_be_added_to_a_group():
    def main():
        with Group() as group:
            tasklet = group.add(microthreads.spawn(lambda: "added"))
        return tasklet.value

    assert microthreads.run(main) == "added"


def test_a_pool_runs_at_most_size_members_at_once(virtual_clock):
    events = []
    running = []

    def job(name):
        running.append(name)
        events.append(("start", name, virtual_clock.now(), len(running)))
        microthreads.sleep(1)
        running.remove(name)

    def main():
        with Pool(2) as pool:
            for name in "abcde":
                pool.spawn(job, name)
                events.append(("spawned", name, virtual_clock.now()))
        return virtual_clock.now()

    assert microthreads.run(main) == 3.0
    assert [e[1:] for e in events if e[0] == "start"] == [      # (name, time, running)
        ("a", 0.0, 1), ("b", 0.0, 2), ("c", 1.0, 1), ("d", 1.0, 2), ("e", 2.0, 1)]
    assert [e[1:] for e in events if e[0] == "spawned"] == [
        ("a", 0.0), ("b", 0.0), ("c", 1.0), ("d", 1.0), ("e", 2.0)]


def test_a_pool_reports_its_free_slots():
    def main():
        pool = Pool(2)
        first = pool.spawn(microthreads.sleep, 0)
        state = (pool.free_count(), pool.full())
        pool.spawn(microthreads.sleep, 0)
        full = pool.full()
        pool.join()
        first.join()
        return state, full, pool.free_count()

    assert microthreads.run(main) == ((1, False), True, 2)


def test_a_pool_of_size_zero_is_an_error():
    with pytest.raises(ValueError):
        Pool(0)
