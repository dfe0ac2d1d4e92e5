"""The chat service's input path (chat/text.py), as PROTOCOL.md's "Transport" states it."""

import re
from itertools import pairwise

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chat.text import (
    TOO_LONG,
    LineSplitter,
    RateLimiter,
    TelnetFilter,
    decode,
    sanitize,
)

PROPERTY = settings(max_examples=150, deadline=None)

IAC, DONT, DO, WONT, WILL, SB, SE = 255, 254, 253, 252, 251, 250, 240
IP, AYT, GA, NOP = 244, 246, 249, 241
ECHO, TIMING_MARK, TERMINAL_TYPE, NAWS = 1, 6, 24, 31


def feed_in_pieces(filter_, data, cuts):
    """Feed `data` cut at `cuts`; return the concatenated payload and replies."""
    payload = replies = b""
    bounds = [0, *sorted(cuts), len(data)]
    for start, end in pairwise(bounds):
        more, answer = filter_.feed(data[start:end])
        payload += more
        replies += answer
    return payload, replies


def split_lines(splitter, data, cuts):
    """Feed `data` cut at `cuts`, then flush; return all items and the rest."""
    items = []
    bounds = [0, *sorted(cuts), len(data)]
    for start, end in pairwise(bounds):
        items += splitter.feed(data[start:end])
    return items, splitter.flush()


@st.composite
def data_and_cuts(draw, data_strategy):
    data = draw(data_strategy)
    cuts = draw(st.lists(st.integers(0, len(data)), max_size=12))
    return data, cuts


# A byte stream rich in what telnet and line framing care about.
telnetish_bytes = st.lists(
    st.one_of(
        st.sampled_from([IAC, SB, SE, WILL, WONT, DO, DONT, IP, NOP, TIMING_MARK, 0, 10, 13]),
        st.integers(0, 255),
    ),
    max_size=200,
).map(bytes)


# --- TelnetFilter -----------------------------------------------------------


def test_a_chunk_without_iac_is_returned_as_is_without_copying():
    data = b"hello, world\r\n" * 100
    payload, replies = TelnetFilter().feed(data)
    assert payload is data
    assert replies == b""


def test_iac_iac_is_the_data_byte_0xff():
    assert TelnetFilter().feed(b"a\xff\xffb") == (b"a\xffb", b"")


def test_ctrl_c_interrupt_is_ignored_and_its_timing_mark_refused():
    ctrl_c = bytes([IAC, IP, IAC, DO, TIMING_MARK])  # FF F4 FF FD 06
    assert TelnetFilter().feed(ctrl_c) == (b"", bytes([IAC, WONT, TIMING_MARK]))


def test_do_timing_mark_is_refused_with_wont_timing_mark():
    payload, replies = TelnetFilter().feed(bytes([IAC, DO, TIMING_MARK]))
    assert (payload, replies) == (b"", b"\xff\xfc\x06")


def test_will_echo_is_refused_with_dont_echo():
    payload, replies = TelnetFilter().feed(bytes([IAC, WILL, ECHO]))
    assert (payload, replies) == (b"", bytes([IAC, DONT, ECHO]))


def test_wont_and_dont_are_removed_and_never_answered():
    data = b"a" + bytes([IAC, WONT, ECHO]) + b"b" + bytes([IAC, DONT, ECHO]) + b"c"
    assert TelnetFilter().feed(data) == (b"abc", b"")


def test_an_option_is_refused_each_time_it_is_offered():
    offer = bytes([IAC, DO, NAWS])
    filter_ = TelnetFilter()
    assert filter_.feed(offer * 3) == (b"", bytes([IAC, WONT, NAWS]) * 3)
    assert filter_.feed(offer) == (b"", bytes([IAC, WONT, NAWS]))


def test_two_byte_commands_are_removed():
    data = bytes([IAC, NOP]) + b"he" + bytes([IAC, AYT, IAC, GA]) + b"llo" + bytes([IAC, IP])
    assert TelnetFilter().feed(data) == (b"hello", b"")


def test_a_subnegotiation_is_removed_whole_with_an_escaped_iac_inside():
    sub = bytes([IAC, SB, TERMINAL_TYPE, 0]) + b"xterm\xff\xff" + bytes([IAC, SE])
    assert TelnetFilter().feed(b"a" + sub + b"b") == (b"ab", b"")


def test_a_subnegotiation_split_over_feeds_is_removed_whole():
    filter_ = TelnetFilter()
    assert filter_.feed(b"a" + bytes([IAC, SB, NAWS, 0])) == (b"a", b"")
    assert filter_.feed(b"\x50\x00\xff") == (b"", b"")
    assert filter_.feed(b"\xff\x18" + bytes([IAC])) == (b"", b"")
    assert filter_.feed(bytes([SE]) + b"b") == (b"b", b"")


def test_a_long_subnegotiation_keeps_none_of_its_content():
    filter_ = TelnetFilter()
    filter_.feed(bytes([IAC, SB, TERMINAL_TYPE]))
    for _ in range(100):
        assert filter_.feed(b"x" * 65536) == (b"", b"")
    state = [getattr(filter_, name) for name in filter_.__slots__]
    assert all(isinstance(value, int) for value in state)  # no buffer anywhere
    assert filter_.feed(bytes([IAC, SE]) + b"ok") == (b"ok", b"")


def test_a_command_inside_a_subnegotiation_ends_it_and_is_answered():
    data = bytes([IAC, SB, TERMINAL_TYPE]) + b"junk" + bytes([IAC, DO, TIMING_MARK]) + b"hi"
    assert TelnetFilter().feed(data) == (b"hi", bytes([IAC, WONT, TIMING_MARK]))


def test_ctrl_c_split_at_every_byte_gives_the_same_result():
    data = b"ab" + bytes([IAC, IP, IAC, DO, TIMING_MARK]) + b"cd"
    for cut in range(len(data) + 1):
        payload, replies = feed_in_pieces(TelnetFilter(), data, [cut])
        assert (payload, replies) == (b"abcd", bytes([IAC, WONT, TIMING_MARK]))


@PROPERTY
@given(data_and_cuts(telnetish_bytes))
def test_any_split_of_a_stream_gives_the_output_of_the_whole(data_cuts):
    data, cuts = data_cuts
    whole = TelnetFilter().feed(data)
    assert feed_in_pieces(TelnetFilter(), data, cuts) == whole


def refusal(verb, option):
    """What the server answers to IAC `verb` `option`."""
    return {DO: bytes([IAC, WONT, option]), WILL: bytes([IAC, DONT, option])}.get(verb, b"")


def escaped(data):
    return data.replace(b"\xff", b"\xff\xff")


@st.composite
def telnet_part(draw):
    """A piece of a telnet session: (bytes on the wire, payload, replies)."""
    kind = draw(st.sampled_from(["data", "negotiation", "command", "subnegotiation"]))
    if kind == "data":
        data = draw(st.binary(max_size=20))
        return escaped(data), data, b""
    if kind == "negotiation":
        verb, option = draw(st.sampled_from([DO, DONT, WILL, WONT])), draw(st.integers(0, 255))
        return bytes([IAC, verb, option]), b"", refusal(verb, option)
    if kind == "command":
        command = draw(st.integers(0, 249).filter(lambda byte: byte != SB))
        return bytes([IAC, command]), b"", b""
    content = escaped(draw(st.binary(max_size=20)))
    return bytes([IAC, SB]) + content + bytes([IAC, SE]), b"", b""


@PROPERTY
@given(st.lists(telnet_part(), max_size=15), st.data())
def test_data_comes_through_and_every_offer_is_refused_whatever_the_split(parts, data):
    wire = b"".join(part[0] for part in parts)
    cuts = data.draw(st.lists(st.integers(0, len(wire)), max_size=12))
    expected = (b"".join(part[1] for part in parts), b"".join(part[2] for part in parts))
    assert feed_in_pieces(TelnetFilter(), wire, cuts) == expected


# --- LineSplitter -----------------------------------------------------------


def test_a_line_ends_at_lf_and_one_cr_before_it_is_dropped():
    assert LineSplitter().feed(b"one\ntwo\r\nthree\r\r\n") == [b"one", b"two", b"three\r"]


def test_a_telnet_cr_nul_ends_a_line():
    assert LineSplitter().feed(b"one\r\0two\r\n") == [b"one", b"two"]


def test_a_cr_nul_split_over_two_feeds_ends_a_line():
    splitter = LineSplitter()
    assert splitter.feed(b"one\r") == []
    assert splitter.feed(b"\0two\r") == [b"one"]
    assert splitter.feed(b"\n") == [b"two"]


def test_a_cr_not_followed_by_lf_or_nul_is_part_of_the_line():
    splitter = LineSplitter()
    assert splitter.feed(b"a\rb\r") == []
    assert splitter.feed(b"c\n") == [b"a\rb\rc"]


def test_a_line_split_over_many_feeds_comes_out_whole():
    splitter = LineSplitter()
    assert [splitter.feed(bytes([byte])) for byte in b"hello"] == [[]] * 5
    assert splitter.feed(b"\r\nnext") == [b"hello"]


def test_several_lines_in_one_feed_come_out_in_order():
    assert LineSplitter().feed(b"a\nb\n\nc\r\n") == [b"a", b"b", b"", b"c"]


def test_a_line_of_exactly_the_limit_is_delivered():
    assert LineSplitter(limit=4).feed(b"abcd\r\nabcd\r\0abcd\n") == [b"abcd"] * 3


def test_a_cr_after_a_line_of_exactly_the_limit_is_not_counted_before_its_lf():
    splitter = LineSplitter(limit=4)
    assert splitter.feed(b"abcd\r") == []
    assert splitter.feed(b"\n") == [b"abcd"]


def test_too_long_is_reported_as_soon_as_the_limit_is_passed():
    splitter = LineSplitter(limit=4)
    assert splitter.feed(b"abcd") == []
    assert splitter.feed(b"e") == [TOO_LONG]


def test_the_rest_of_a_too_long_line_is_discarded_up_to_the_next_newline():
    splitter = LineSplitter(limit=4)
    assert splitter.feed(b"abcdefgh") == [TOO_LONG]
    assert splitter.feed(b"ijkl" * 1000) == []
    assert splitter.feed(b"mno\r\nnext\n") == [b"next"]


def test_a_cr_nul_also_ends_the_discarding():
    splitter = LineSplitter(limit=4)
    assert splitter.feed(b"abcdefgh\r") == [TOO_LONG]
    assert splitter.feed(b"\0ok\n") == [b"ok"]


def test_a_too_long_line_within_one_feed_is_reported_once_in_its_place():
    assert LineSplitter(limit=3).feed(b"ab\nabcdef\ncd\n") == [b"ab", TOO_LONG, b"cd"]


def test_memory_held_between_feeds_never_exceeds_the_limit():
    splitter = LineSplitter(limit=100)
    for chunk in (b"x" * 60, b"x" * 40, b"x" * 1, b"y" * 10_000):
        splitter.feed(chunk)
        assert len(splitter._line) <= 100


def test_flush_returns_the_unterminated_rest_and_resets():
    splitter = LineSplitter()
    splitter.feed(b"done\npartial")
    assert splitter.flush() == b"partial"
    assert splitter.flush() == b""
    assert splitter.feed(b"fresh\n") == [b"fresh"]


def test_flush_drops_a_pending_cr_and_a_too_long_rest():
    splitter = LineSplitter(limit=4)
    splitter.feed(b"abc\r")
    assert splitter.flush() == b"abc"
    splitter.feed(b"abcdefgh")
    assert splitter.flush() == b""


def test_past_max_lines_a_feed_drops_everything_through_its_last_line_ending():
    splitter = LineSplitter()
    assert splitter.feed(b"a\nb\r\nc\r\0d\ne", max_lines=2) == [b"a", b"b"]
    assert splitter.dropped == 2
    assert splitter.feed(b"f\n") == [b"ef"]       # the unfinished line is kept
    assert splitter.dropped == 0


def test_a_feed_with_max_lines_zero_drops_the_line_in_progress_with_the_rest():
    splitter = LineSplitter(limit=4)
    splitter.feed(b"abcdefg")                     # too long: being discarded
    assert splitter.feed(b"\n\n\nok", max_lines=0) == []
    assert splitter.dropped == 3
    assert splitter.feed(b"\n") == [b"ok"]


def test_a_feed_within_max_lines_or_without_line_endings_drops_nothing():
    splitter = LineSplitter()
    assert splitter.feed(b"a\nb\n", max_lines=2) == [b"a", b"b"]
    assert splitter.feed(b"no ending yet", max_lines=0) == []
    assert splitter.dropped == 0
    assert splitter.flush() == b"no ending yet"


def test_a_pending_cr_completed_by_the_next_feed_counts_toward_max_lines():
    splitter = LineSplitter()
    splitter.feed(b"one\r")
    assert splitter.feed(b"\ntwo\nthree\n", max_lines=1) == [b"one"]
    assert splitter.dropped == 2


@PROPERTY
@given(telnetish_bytes, st.integers(1, 12), st.integers(0, 8))
def test_max_lines_keeps_the_first_items_and_the_unfinished_tail(data, limit, max_lines):
    whole = LineSplitter(limit)
    expected = whole.feed(data)
    splitter = LineSplitter(limit)
    items = splitter.feed(data, max_lines)
    if not splitter.dropped:
        assert items == expected
        assert splitter.flush() == whole.flush()
    else:
        tail = re.split(rb"\r\0|\n", data)[-1]   # after the last line ending
        fresh = LineSplitter(limit)
        assert items == expected[:max_lines] + fresh.feed(tail)
        assert splitter.flush() == fresh.flush()


def test_a_limit_below_one_byte_is_refused():
    with pytest.raises(ValueError, match="at least 1"):
        LineSplitter(limit=0)


@PROPERTY
@given(data_and_cuts(telnetish_bytes), st.integers(1, 12))
def test_any_split_gives_the_items_of_the_whole(data_cuts, limit):
    data, cuts = data_cuts
    whole = split_lines(LineSplitter(limit), data, [])
    assert split_lines(LineSplitter(limit), data, cuts) == whole


@PROPERTY
@given(data_and_cuts(telnetish_bytes), st.integers(1, 12))
def test_lines_never_exceed_the_limit_nor_hold_a_newline(data_cuts, limit):
    data, cuts = data_cuts
    items, rest = split_lines(LineSplitter(limit), data, cuts)
    for item in [*items, rest]:
        assert item is TOO_LONG or (len(item) <= limit and b"\n" not in item)


@PROPERTY
@given(
    st.lists(
        st.tuples(
            st.binary(max_size=12).filter(lambda line: b"\r" not in line and b"\n" not in line),
            st.sampled_from([b"\n", b"\r\n", b"\r\0"]),
        ),
        max_size=10,
    ),
    st.integers(1, 8),
    st.data(),
)
def test_each_line_comes_out_or_is_too_long(lines, limit, data):
    stream = b"".join(line + ending for line, ending in lines)
    cuts = data.draw(st.lists(st.integers(0, len(stream)), max_size=12))
    expected = [line if len(line) <= limit else TOO_LONG for line, _ in lines]
    assert split_lines(LineSplitter(limit), stream, cuts) == (expected, b"")


# --- decode -----------------------------------------------------------------


def test_utf8_is_decoded():
    assert decode("héllo, 世界".encode()) == "héllo, 世界"


def test_invalid_utf8_becomes_replacement_characters():
    assert decode(b"a\xffb\xc3") == "a\ufffdb\ufffd"


@PROPERTY
@given(st.binary(max_size=100))
def test_decode_never_raises_on_any_bytes(data):
    assert isinstance(decode(data), str)


# --- sanitize ---------------------------------------------------------------


def is_unsafe(char):
    code = ord(char)
    return (
        (code < 0x20 and char != "\t")
        or 0x7F <= code <= 0x9F
        or 0x2028 <= code <= 0x202E
        or 0x2066 <= code <= 0x2069
    )


def test_printable_text_and_tab_are_kept():
    text = "Hello,\tworld! Ünïcödé 世界 😀 مرحبا \u00a0 ~"
    assert sanitize(text) == text


def test_csi_sequences_are_removed_whole():
    assert sanitize("\x1b[31mred\x1b[0m \x1b[2J\x1b[H\x1b[?25l\x1b[1;31;4mx") == "red x"


def test_osc_is_removed_up_to_bel_or_st():
    assert sanitize("a\x1b]0;owned\x07b\x1b]8;;http://x\x1b\\c") == "abc"


def test_dcs_sos_pm_and_apc_are_removed_up_to_st():
    assert sanitize("a\x1bPq#0\x1b\\b\x1bXsos\x1b\\c\x1b^pm\x9cd\x1b_apc\x1b\\e") == "abcde"


def test_an_unterminated_string_sequence_is_removed_to_the_end():
    assert sanitize("visible\x1b]0;title without end") == "visible"
    assert sanitize("visible\x1bPno end\r\n") == "visible"


def test_nf_and_two_byte_escape_sequences_are_removed():
    assert sanitize("a\x1b(0b\x1b#8c\x1bcd\x1b7e\x1b8f\x1bMg") == "abcdefg"


def test_c1_csi_osc_and_dcs_are_removed_with_their_sequences():
    assert sanitize("a\x9b2Jb\x9d0;t\x07c\x90data\x9cd") == "abcd"


def test_c0_controls_del_and_c1_are_removed_but_not_tab():
    assert sanitize("a\x00b\x07c\x08d\re\nf\x7fg\x85h\x1b\ti") == "abcdefgh\ti"


def test_bidi_controls_are_removed():
    text = "a\u202ab\u202bc\u202cd\u202de\u202ef\u2066g\u2067h\u2068i\u2069j"
    assert sanitize(text) == "abcdefghij"


def test_a_lone_esc_at_the_end_is_removed():
    assert sanitize("text\x1b") == "text"


special_chars = st.sampled_from(
    list("\x1b\x9b\x9d\x90\x98\x9e\x9f\x9c\x07\x18\x1a[]PX^_\\(#;0m \t\r\n\x7f\x85")
    + ["\u202e", "\u2066", "\u2069"]
)
messy_text = st.text(alphabet=st.one_of(special_chars, st.characters()), max_size=60)


@PROPERTY
@given(messy_text)
def test_sanitized_text_holds_no_control_escape_or_bidi_character(text):
    assert not any(is_unsafe(char) for char in sanitize(text))


@PROPERTY
@given(st.text(alphabet=st.characters().filter(lambda char: not is_unsafe(char))))
def test_text_without_controls_is_unchanged(text):
    assert sanitize(text) == text


@PROPERTY
@given(messy_text)
def test_sanitize_is_idempotent(text):
    once = sanitize(text)
    assert sanitize(once) == once


# --- RateLimiter ------------------------------------------------------------


def allowed(limiter, now, lines):
    return sum(limiter.allow(now) for _ in range(lines))


def test_a_burst_of_twice_the_rate_passes_then_lines_are_refused():
    limiter = RateLimiter(20)
    assert allowed(limiter, 0.0, 40) == 40
    assert not limiter.allow(0.0)


def test_after_one_second_rate_more_lines_pass():
    limiter = RateLimiter(20)
    allowed(limiter, 0.0, 50)
    assert allowed(limiter, 1.0, 30) == 20


def test_tokens_never_pile_up_beyond_the_burst():
    limiter = RateLimiter(20, burst=5)
    assert allowed(limiter, 0.0, 10) == 5
    assert allowed(limiter, 3600.0, 10) == 5


def test_a_warning_is_due_at_the_first_refusal_only():
    limiter = RateLimiter(20)
    allowed(limiter, 0.0, 40)
    assert not limiter.warn_due(0.0)  # nothing refused yet
    assert not limiter.allow(0.0)
    assert limiter.warn_due(0.0)
    assert not limiter.allow(0.01)  # a fifth of a token came back
    assert not limiter.warn_due(0.01)


def test_warnings_are_due_at_most_once_a_second_while_flooding():
    limiter = RateLimiter(20)
    warnings = []
    for tick in range(500):  # 100 lines a second for 5 s
        now = tick / 100
        if not limiter.allow(now) and limiter.warn_due(now):
            warnings.append(now)
    assert len(warnings) >= 4
    assert all(later - earlier >= 1.0 for earlier, later in pairwise(warnings))


def test_no_warning_is_due_once_lines_pass_again():
    limiter = RateLimiter(20)
    allowed(limiter, 0.0, 41)
    assert limiter.allow(5.0)
    assert not limiter.warn_due(5.0)


def test_available_counts_whole_tokens_without_taking_any():
    limiter = RateLimiter(20)
    assert limiter.available(0.0) == 40
    allowed(limiter, 0.0, 39)
    assert limiter.available(0.0) == limiter.available(0.0) == 1
    assert allowed(limiter, 0.0, 5) == 1
    assert limiter.available(0.5) == 10
    assert RateLimiter(0).available(0.0) is None


def test_lines_dropped_unasked_make_a_warning_due():
    limiter = RateLimiter(20)
    limiter.refuse()
    assert limiter.warn_due(0.0)
    limiter.refuse()
    assert not limiter.warn_due(0.5)                # at most once a second


def test_rate_zero_never_refuses_and_never_warns():
    limiter = RateLimiter(0)
    assert allowed(limiter, 0.0, 100_000) == 100_000
    assert not limiter.warn_due(0.0)


def test_a_small_rate_still_lets_a_line_through():
    limiter = RateLimiter(0.25)
    assert limiter.allow(0.0)
    assert not limiter.allow(1.0)
    assert limiter.allow(4.0)


def test_a_clock_stepping_back_counts_as_standing_still():
    limiter = RateLimiter(1, burst=1)
    assert limiter.allow(10.0)
    assert not limiter.allow(5.0)
    assert not limiter.allow(10.5)
    assert limiter.allow(11.0)


@pytest.mark.parametrize(("rate", "burst"), [(-1, None), (10, 0.5)])
def test_a_negative_rate_or_a_burst_below_one_line_is_refused(rate, burst):
    with pytest.raises(ValueError):
        RateLimiter(rate, burst)


@PROPERTY
@given(
    st.floats(0.5, 100),
    st.lists(st.floats(0, 0.5), min_size=1, max_size=200),
)
def test_lines_allowed_never_exceed_the_burst_plus_the_rate_times_the_time(rate, gaps):
    limiter = RateLimiter(rate)
    first = now = gaps[0]
    passed = 0
    for gap in gaps:
        now += gap
        passed += limiter.allow(now)
    assert passed <= limiter.burst + rate * (now - first) + 1e-9
