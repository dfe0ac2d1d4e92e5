"""A game loop at a fixed frame rate that drives the microthreads hub.

The host owns the loop, as a game or a GUI does. Each frame it updates its
world, then spends the rest of the frame waiting on the hub's descriptor
(``Hub.fileno()``), never past the hub's next deadline
(``Hub.next_deadline()``), and lets the hub run one iteration at a time
(``Hub.tick()``). Meanwhile tasklets serve sockets in straight-line code:
here an echo service on one end of a socket pair, whose other end the game
talks to once per frame. As fibra's ``Schedule.tick()`` did.

    python examples/game_loop.py [frames] [fps]
"""

from __future__ import annotations

import select
import socket
import sys

import microthreads


def echo(sock):
    """Send back what arrives until the peer closes: a tasklet, straight-line."""
    hub = microthreads.get_hub()
    while True:
        hub.wait_readable(sock.fileno())     # parks; the hub wakes it when data comes
        data = sock.recv(65536)
        if not data:
            return
        sock.sendall(data)


def game_loop(frames, fps, update):
    """Call ``update(frame)`` ``frames`` times, ``fps`` times a second.

    Between frames the hub gets the time that is left: the loop sleeps in
    ``select`` on the hub's descriptor, wakes when the hub has I/O or a
    deadline, and ticks it. Returns the number of hub ticks.
    """
    hub = microthreads.get_hub()
    period = 1.0 / fps
    next_frame = hub.clock()
    ticks = 0
    for frame in range(frames):
        update(frame)
        next_frame += period
        while True:
            now = hub.clock()
            wait = next_frame - now
            deadline = hub.next_deadline()
            if deadline is not None:
                wait = min(wait, deadline - now)
            if wait > 0:
                select.select([hub.fileno()], [], [], wait)
            hub.tick()
            ticks += 1
            if hub.clock() >= next_frame:
                break
    return ticks


def serve_echo_in_game_loop(frames=30, fps=60):
    """Run the game with an echo tasklet beside it; return what happened.

    Each frame the game reads the echoes that came back and sends one line.
    After the last frame it closes its side and ticks until the echo tasklet
    has answered everything and ended.
    """
    hub = microthreads.get_hub()
    game_end, service_end = socket.socketpair()
    game_end.setblocking(False)
    service_end.setblocking(False)
    sent, received = [], []

    def read_echoes():
        while True:
            try:
                data = game_end.recv(65536)
            except BlockingIOError:
                return
            if not data:
                return
            received.append(data)

    def update(frame):                        # the game's own work, once a frame
        read_echoes()
        line = b"frame %d\n" % frame
        game_end.sendall(line)
        sent.append(line)

    try:
        service = microthreads.spawn(echo, service_end)
        started = hub.clock()
        ticks = game_loop(frames, fps, update)
        elapsed = hub.clock() - started
        received_in_frames = b"".join(received)
        game_end.shutdown(socket.SHUT_WR)     # the echo tasklet sees EOF and returns
        while hub.tick(timeout=0.1):
            pass
        read_echoes()
    finally:
        game_end.close()
        service_end.close()
    return {"frames": frames, "ticks": ticks, "elapsed": elapsed, "echo done": service.dead,
            "sent": b"".join(sent), "received": b"".join(received),
            "received in frames": received_in_frames}


def main(argv=None):
    args = sys.argv[1:] if argv is None else argv
    frames = int(args[0]) if args else 30
    fps = float(args[1]) if len(args) > 1 else 60
    result = serve_echo_in_game_loop(frames, fps)
    print(f"{result['frames']} frames at {fps:g} fps in {result['elapsed']:.3f} s,"
          f" {result['ticks']} hub ticks")
    print(f"echoed {len(result['received'])} of {len(result['sent'])} bytes:"
          f" {'all back' if result['received'] == result['sent'] else 'MISSING'}")
    return 0 if result["received"] == result["sent"] else 1


if __name__ == "__main__":
    sys.exit(main())
