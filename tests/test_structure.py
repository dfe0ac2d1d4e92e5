"""The package's shape: modules keep their state to themselves and import no circle."""

import importlib.util
import re
from pathlib import Path

_TOOL = Path(__file__).resolve().parent.parent / "tools" / "private_access.py"
_spec = importlib.util.spec_from_file_location("private_access", _TOOL)
private_access = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(private_access)


def test_modules_reach_into_each_others_private_state_at_most_ten_times():
    found = private_access.count()
    reaches = [f"{path}:{line}: {text}" for path, items in found.items() for line, text in items]
    assert len(reaches) <= private_access.LIMIT, "\n".join(reaches)


def test_the_count_sees_a_reach_and_ignores_a_modules_own_state(tmp_path):
    module = tmp_path / "example.py"
    module.write_text("class A:\n"
                      "    def __init__(self):\n"
                      "        self._mine = 1\n"
                      "    def peek(self, other, hub):\n"
                      "        return other._mine, hub._ready\n")
    assert private_access.reaches(module) == [(5, "hub._ready")]


def test_no_module_of_the_package_imports_in_a_circle():
    assert private_access.import_cycles() == []


def test_the_count_sees_a_store_into_another_modules_private_attribute(tmp_path):
    module = tmp_path / "example.py"
    module.write_text("def adopt(tasklet, group):\n"
                      "    tasklet._group = group\n")
    assert private_access.reaches(module, elsewhere={"_group"}) == [(2, "tasklet._group")]
    # a name no other module defines is this module's own state on those objects
    assert private_access.reaches(module, elsewhere=set()) == []


def test_the_count_sees_a_private_name_imported_from_another_module_of_the_package(tmp_path):
    module = tmp_path / "example.py"
    module.write_text("from microthreads.net.stream import _describe, Connection\n"
                      "from os import _exit\n")
    assert private_access.reaches(module) == [
        (1, "from microthreads.net.stream import _describe")]


def test_the_chat_service_is_counted_with_the_runtime():
    assert [package.name for package in private_access.PACKAGES] == ["microthreads", "chat"]


ROOT = Path(__file__).resolve().parent.parent


def tree_paths(text, heading):
    """The file paths that the first code block after ``heading`` draws as a
    tree: each line's names (before two spaces and a description), a line of
    one ``name/`` opening a folder for the lines indented under it."""
    section = text[text.index(heading):]
    block = section.split("```\n", 2)[1]
    folders, paths = [], set()
    for line in block.splitlines():
        if not line.strip():
            continue
        level = (len(line) - len(line.lstrip(" "))) // 2
        names = [name.strip(",") for name in re.split(r"\s{2,}", line.strip())[0].split()]
        del folders[level:]
        if len(names) == 1 and names[0].endswith("/"):
            folders.append(names[0])
            continue
        paths.update("".join(folders) + name for name in names)
    return paths


def _modules():
    return {path.relative_to(ROOT).as_posix()
            for package in ("microthreads", "chat") for path in (ROOT / package).rglob("*.py")}


def test_the_tree_reader_follows_folders_and_names_on_one_line():
    text = ("## The shape\n\n```\na/      the a package\n  x.py y.py   two\n  b/     b\n"
            "    z.py   z\n  w.py, v/   back in a\nc.py\n```\n")
    assert tree_paths(text, "## The shape") == {"a/x.py", "a/y.py", "a/b/z.py", "a/w.py",
                                                "a/v/", "c.py"}


def test_designs_shape_names_every_module_and_no_module_that_is_gone():
    drawn = tree_paths((ROOT / "docs" / "DESIGN.md").read_text(), "## The shape")
    assert sorted(_modules() - drawn) == [], "modules missing from DESIGN.md's shape"
    gone = [path for path in drawn if path.endswith(".py") and not (ROOT / path).exists()]
    assert gone == [], "DESIGN.md's shape names modules that do not exist"


def test_the_readmes_where_things_are_names_every_module_and_no_module_that_is_gone():
    drawn = tree_paths((ROOT / "README.md").read_text(), "## Where things are")
    assert sorted(_modules() - drawn) == [], "modules missing from the README's tree"
    gone = [path for path in drawn if path.endswith(".py") and not (ROOT / path).exists()]
    assert gone == [], "the README's tree names modules that do not exist"
