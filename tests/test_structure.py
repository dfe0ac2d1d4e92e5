"""The package's shape: modules keep their state to themselves and import no circle."""

import importlib.util
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
