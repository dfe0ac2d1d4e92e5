"""The WebSocket's fast path reads what wsproto alone reads (DESIGN.md, "WebSocket").

A server socket without extensions decodes the commonest client frame itself
(``microthreads.websocket.FAST_PATH``); everything else is wsproto's. Here
random sequences of client frames (every opcode, fragments with control
frames between them, bad UTF-8, messages over the limit, unmasked frames,
RSV bits, lengths in a longer form than needed), split at random byte
boundaries into the reads the socket gets, are read once with the fast path
and once without: the messages returned, the close code and reason, and
every byte the server wrote back (pongs, its close frame) are the same.

The socket is accepted through the WSGI upgrade contract
(``environ["microthreads.upgrade"]``) onto a scripted connection whose
``recv`` returns the chosen reads, then EOF: the reads are exactly those.
"""

from __future__ import annotations

import base64
import os
import struct
from collections import deque
from itertools import pairwise

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

import microthreads

websocket = pytest.importorskip("microthreads.websocket")

#: Small, so that messages over it are cheap to make.
MAX_MESSAGE = 300
PROPERTY = settings(max_examples=400, deadline=None)


class ScriptedConnection:
    """What a WebSocket asks of its Connection; ``recv`` returns ``reads`` in
    order (at most the size asked each time), then EOF."""

    peer = ("127.0.0.1", 50000)

    def __init__(self, reads):
        self.reads = deque(reads)
        self.written = bytearray()
        self.closed = False
        self.close_reason = None
        self.pending_output = 0
        self.max_output = 1 << 20

    def recv(self, size):
        if not self.reads:
            return b""
        data = self.reads.popleft()
        if len(data) > size:
            self.reads.appendleft(data[size:])
            data = data[:size]
        return data

    def write(self, data):
        if self.closed:
            raise microthreads.net.NetworkError("closed")
        self.written += data

    def flush(self, timeout=None):
        return True

    def close(self, reason=None):
        self.closed = True
        self.close_reason = self.close_reason or reason


def read_all(reads, fast, monkeypatch, max_message=MAX_MESSAGE, close_after=None):
    """Accept a WebSocket on ``reads``; everything observable of reading it to
    the end (the app closes it after ``close_after`` messages, if given)."""
    monkeypatch.setattr(websocket, "FAST_PATH", fast)
    conn = ScriptedConnection(reads)
    key = base64.b64encode(os.urandom(16)).decode()
    environ = {"REQUEST_METHOD": "GET", "PATH_INFO": "/", "HTTP_HOST": "127.0.0.1",
               "HTTP_UPGRADE": "websocket", "HTTP_CONNECTION": "Upgrade",
               "HTTP_SEC_WEBSOCKET_VERSION": "13", "HTTP_SEC_WEBSOCKET_KEY": key,
               "microthreads.upgrade": lambda status, headers: conn}
    seen = {"messages": []}

    def main():
        ws = websocket.accept(environ, max_message=max_message)
        for message in ws:
            seen["messages"].append(message)
            if len(seen["messages"]) == close_after:
                ws.close(3000, "enough")
        seen["close"] = (ws.close_code, ws.close_reason)

    microthreads.run(main)
    seen["written"] = bytes(conn.written)
    return seen


def frame(opcode, payload, *, fin=True, rsv=0, mask=True, length_form=None):
    """A client frame as bytes (RFC 6455 5.2); ``length_form`` 126 or 127 forces
    that length encoding even where a shorter one would do."""
    size = len(payload)
    form = length_form or (size if size < 126 else 126 if size < 65536 else 127)
    head = bytes([(0x80 if fin else 0) | rsv << 4 | opcode, (0x80 if mask else 0) | form])
    if form == 126:
        head += struct.pack("!H", size)
    elif form == 127:
        head += struct.pack("!Q", size)
    if not mask:
        return head + payload
    key = os.urandom(4)
    return head + key + bytes(byte ^ key[index % 4] for index, byte in enumerate(payload))


def weighted(usual, *others, weight=8):
    """``usual`` ``weight`` times as often as each of ``others``."""
    return st.sampled_from([usual] * weight + list(others))


text = st.text(max_size=80).map(lambda s: s.encode("utf-8"))
bad_utf8 = st.tuples(text, st.sampled_from([b"\xff", b"\xc3", b"\xed\xa0\x80", b"\xf4\x90"]),
                     text).map(b"".join)
texts = st.one_of(text, text, text, text, text, bad_utf8, text.map(lambda t: t * 5))
payloads = st.one_of(texts, st.binary(max_size=60), st.binary(min_size=90, max_size=400))


@st.composite
def frames_any(draw):
    """Mostly what a browser sends (final, masked, no RSV bit, text or binary),
    each field now and then something else."""
    opcode = draw(weighted(1, 2, 2, 2, 0, 0, 3, 8, 9, 9, 10, 11, weight=12))
    return frame(opcode, draw(texts if opcode in (0, 1) else payloads),
                 fin=draw(weighted(True, False, weight=5)), rsv=draw(weighted(0, 1, 4, weight=40)),
                 mask=draw(weighted(True, False, weight=40)),
                 length_form=draw(weighted(None, 126, 127, weight=20)))


def _fragmented(parts, opcode, controls):
    frames = []
    for index, part in enumerate(parts):
        last = index == len(parts) - 1
        frames.append(frame(opcode if index == 0 else 0, part, fin=last))
        if not last and controls[index % len(controls)]:
            frames.append(controls[index % len(controls)])
    return b"".join(frames)


pings = st.builds(lambda payload: frame(9, payload), st.binary(max_size=20))
fragmented = st.builds(_fragmented, st.lists(texts, min_size=2, max_size=4),
                       st.sampled_from([1, 2]),
                       st.lists(st.one_of(st.just(b""), pings), min_size=1, max_size=3))
close_payload = st.one_of(st.just(b""), st.builds(
    lambda code, reason: struct.pack("!H", code) + reason,
    st.sampled_from([1000, 1001, 1002, 1005, 1006, 1016, 2999, 3000, 4999, 5000]),
    st.one_of(text, bad_utf8).map(lambda reason: reason[:100])))
closes = st.builds(lambda payload: frame(8, payload), close_payload)
frames = st.lists(st.one_of(*[frames_any()] * 4, fragmented, pings, closes),
                  min_size=1, max_size=16).map(b"".join)
ordinary = st.one_of(st.builds(frame, st.just(1), texts), st.builds(frame, st.just(2), payloads))


@st.composite
def split(draw, streams):
    """A byte stream cut into the reads the socket gets: at random places, or
    every few bytes."""
    data = draw(streams)
    step = draw(st.one_of(st.none(), st.integers(1, 9)))
    if step is None:
        cuts = sorted(draw(st.sets(st.integers(0, len(data)), max_size=30)))
    else:
        cuts = list(range(step, len(data), step))
    bounds = [0, *cuts, len(data)]
    return [data[a:b] for a, b in pairwise(bounds) if b > a]


#: Lengths about the 7-bit form's end (125, 126) and the limits (100, 300).
edge_sizes = st.sampled_from([0, 1, 99, 100, 101, 124, 125, 126, 127, 299, 300, 301])
edges = st.builds(lambda opcode, size, fill: frame(opcode, fill * size), st.sampled_from([1, 2]),
                  edge_sizes, st.sampled_from([b"a", b"\x00", b"\xff"]))


_PING, _START = frame(9, b"p" * 20), frame(1, b"part", fin=False)


@PROPERTY
@given(split(frames), st.sampled_from([100, 300]), st.one_of(st.none(), st.integers(1, 4)))
# a final text frame while a fragmented message is open: wsproto's error
@example([_START + frame(1, b"final")], 300, None)
# frames of the fast path's shape but one field: unmasked, an RSV bit, 16 bits for 7
@example([frame(1, b"hello", mask=False)], 300, None)
@example([frame(1, b"hello", rsv=4) + frame(1, b"after")], 300, None)
@example([frame(2, b"hello", length_form=126)], 300, None)
# a frame for wsproto whose header comes in two reads, then one for the fast path
@example([_PING[:1], _PING[1:] + frame(1, b"after")], 300, None)
@example([_PING[:3], _PING[3:] + frame(1, b"after")], 300, None)
@example([_START[:5], _START[5:] + frame(0, b"end") + frame(1, b"after")], 300, None)
# a 16-bit length in two reads; a frame in reads of one byte
@example([frame(1, b"x" * 200)[:3], frame(1, b"x" * 200)[3:]], 300, None)
@example([bytes([byte]) for byte in frame(1, b"x" * 130) + frame(2, b"y")], 300, None)
def test_any_client_frames_read_with_the_fast_path_as_with_wsproto_alone(reads, max_message,
                                                                       close_after):
    with pytest.MonkeyPatch.context() as monkeypatch:
        fast = read_all(reads, True, monkeypatch, max_message, close_after)
        alone = read_all(reads, False, monkeypatch, max_message, close_after)
    assert fast == alone


@PROPERTY
@given(split(st.lists(st.one_of(ordinary, edges), min_size=1, max_size=20).map(b"".join)),
       st.sampled_from([100, 300]))
def test_browser_frames_in_any_reads_are_the_same_messages_as_with_wsproto_alone(reads,
                                                                               max_message):
    with pytest.MonkeyPatch.context() as monkeypatch:
        fast = read_all(reads, True, monkeypatch, max_message)
        alone = read_all(reads, False, monkeypatch, max_message)
    assert fast == alone


def test_the_fast_path_reads_whole_frames_of_every_length_form_it_takes(monkeypatch):
    messages = ["", "a" * 125, "é" * 63, "b" * 126, "c" * MAX_MESSAGE]
    binary = [b"", bytes(range(256))[:MAX_MESSAGE]]
    data = b"".join([frame(1, m.encode()) for m in messages] + [frame(2, b) for b in binary])
    seen = read_all([data], True, monkeypatch)
    assert seen["messages"] == messages + binary
    assert seen["close"] == (1006, "connection lost")


def test_invalid_utf8_in_a_whole_frame_closes_with_1007_after_the_messages_before_it(
        monkeypatch):
    data = frame(1, b"fine") + frame(1, b"bad \xff here") + frame(1, b"never read")
    seen = read_all([data], True, monkeypatch)
    assert seen["messages"] == ["fine"]
    assert seen["close"][0] == 1007
    assert seen["written"][:4] == b"\x88" + bytes([len(seen["written"]) - 2]) + b"\x03\xef"


def test_a_message_over_the_limit_closes_with_1009(monkeypatch):
    data = frame(1, b"fine") + frame(1, b"x" * (MAX_MESSAGE + 1))
    seen = read_all([data], True, monkeypatch)
    assert seen["messages"] == ["fine"]
    assert seen["close"][0] == 1009
    assert seen["written"][2:4] == b"\x03\xf1"


def test_prepared_frames_are_the_frames_wsproto_sends():
    from wsproto.frame_protocol import FrameProtocol
    framer = FrameProtocol(client=False, extensions=[])
    messages = ["", "a" * 125, "é" * 63, "b" * 126, "c" * 65535, "d" * 65536, b"", b"\x00" * 300]
    prepared = websocket.Prepared(messages)
    assert prepared.frames == b"".join(bytes(framer.send_data(m)) for m in messages)
    with pytest.raises(TypeError):
        assert websocket.Prepared([3]).frames
