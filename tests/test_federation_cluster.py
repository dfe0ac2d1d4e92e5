"""Chat nodes on a real Redis Cluster (issue 14).

One local cluster for the module (three masters, three replicas; see
``redis_helpers.RedisCluster``): its startup costs seconds, so the tests
share it, and the one that kills a master comes last (the cluster it
leaves has a master without a replica). Each test uses rooms of its own.
The nodes are given one node's URL (``--redis redis://HOST:PORT``) and find
the cluster themselves. Every wait is for an expected line, with a
generous timeout; nothing sleeps for a fixed time.
"""

from __future__ import annotations

import itertools

import pytest
from chat_helpers import TAKEN, chat_servers
from redis_helpers import REDIS_CLI, REDIS_SERVER, RedisCluster, redis

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(REDIS_SERVER is None or REDIS_CLI is None or redis is None,
                       reason="needs redis-server and redis-cli (`make system-deps`:"
                              " Debian's redis-server) and redis-py ('.[test]')"),
]

MISSED = "Some lines were missed."
_names = itertools.count()


@pytest.fixture(scope="module")
def cluster():
    cluster = RedisCluster()
    yield cluster
    cluster.stop()


def _rooms_on_two_masters(cluster, prefix):
    """Two room names whose keys (hash tag ``{room}``) live on different masters."""
    first = f"{prefix}{next(_names)}"
    master = cluster.master_of(f"chat:{{{first}}}:log")
    while True:
        second = f"{prefix}{next(_names)}"
        if cluster.master_of(f"chat:{{{second}}}:log") != master:
            return first, second


@pytest.fixture
def start(cluster):
    """``start(room, url=None)``: a chat node of ``room`` on the cluster."""
    with chat_servers() as start_server:
        def start(room, url=None):
            return start_server(redis=url or cluster.url, room=room, rate=0, join_rate=0)
        yield start


def test_a_room_on_a_cluster_behaves_as_one_chat_and_rooms_stay_apart(cluster, start):
    lobby, other = _rooms_on_two_masters(cluster, "apart")
    replica = f"redis://127.0.0.1:{cluster.replica_port()}"   # any node will do
    a, b, c = start(lobby), start(lobby, url=replica), start(other)
    alice = a.join("alice")
    bob = b.join("bob")
    assert bob.online == "Online (2): alice, bob"
    alice.expect("bob has joined the chat.")
    carol = c.join("carol")                   # another room: another master
    assert carol.online == "Online (1): carol"
    late = c.connect()
    late.expect("What is your handle?")
    late.say("ALICE")                         # free in this room
    late.expect("ALICE has joined the chat.", "Online (2): carol, ALICE")
    carol.expect("ALICE has joined the chat.")
    bob.say("/nick Alice")
    bob.expect(TAKEN)
    alice.say("/msg BOB psst")
    alice.expect("[private to bob] psst")
    bob.expect("[private] alice: psst")
    carol.say("in the other room")
    for client in (alice, bob):
        client.say(f"hello from {client.name}")
    for client in (alice, bob):
        assert sorted(client.lines(2)) == ["alice says: hello from alice",
                                           "bob says: hello from bob"]
    carol.expect("carol says: in the other room")
    for client in (alice, bob, carol):
        client.expect_nothing_more()


def test_a_master_killed_fails_over_and_the_members_stay(cluster, start):
    """Last in this module: the cluster it leaves has one master fewer replicas."""
    hit, spared = _rooms_on_two_masters(cluster, "failover")
    victim = cluster.master_of(f"chat:{{{hit}}}:log")
    rooms = {}
    for room in (hit, spared):
        a, b = start(room), start(room)
        first = a.join(f"{room}a")
        second = b.join(f"{room}b")
        first.expect(f"{room}b has joined the chat.")
        rooms[room] = (first, second)
    before = 20
    for members in rooms.values():            # lines on both nodes, then read by all
        for number in range(before):
            for member in members:
                member.say(f"{member.name} {number}")
        for member in members:
            member.lines(before * 2)
    cluster.kill_master(victim)               # SIGKILL by PID; its replica takes over
    after = 20
    for members in rooms.values():            # said after the failover: retried until in
        for number in range(after):
            for member in members:
                member.say(f"{member.name} {before + number}")
    for members in rooms.values():
        seen = []
        for member in members:
            lines = _lines_until_all(member, [f"{sender.name} says: {sender.name}"
                                              f" {before + after - 1}" for sender in members])
            said = [line for line in lines if line != MISSED]
            seen.append(said)
            for sender in members:            # each sender's lines: in order, none twice
                own = [line for line in said if line.startswith(f"{sender.name} says:")]
                numbers = [int(line.rsplit(" ", 1)[1]) for line in own]
                assert numbers == sorted(set(numbers)), (member, sender, numbers)
                if MISSED not in lines:       # none lost, unless the member was told
                    assert numbers == list(range(before, before + after)), (member, numbers)
        assert seen[0] == seen[1]              # one order on both nodes
        for member in members:                # still members, on both nodes
            member.say("/who")
            member.expect(f"Online (2): {members[0].name}, {members[1].name}")


def _lines_until_all(client, lasts, timeout=30):
    """The lines ``client`` gets until it has had every line of ``lasts``."""
    lines, waiting = [], set(lasts)
    while waiting:
        lines.append(client.line(timeout))
        waiting.discard(lines[-1])
    return lines
