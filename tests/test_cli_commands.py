"""How ``get-md`` finds its subcommands (the ``get_md.commands`` entry-point group, a
built-in fallback from a source tree) and which errors it treats as known."""

from __future__ import annotations

import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest

from get_md import cli
from get_md.cli import main
from get_md.errors import GetMDError

ROOT = Path(__file__).resolve().parents[1]
BUILT_IN = ["info", "train", "export"]
PLUGGED = ["rescore-poses", "rescore-traj", "nbody", "demo", "md"]


def _commands(parser) -> list[str]:
    action = next(a for a in parser._actions if a.dest == "command")
    return list(action.choices)


def test_pyproject_entry_points_match_the_fallback_list():
    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["entry-points"]
    assert declared[cli.COMMANDS_GROUP] == cli.FALLBACK_COMMANDS
    assert list(cli.FALLBACK_COMMANDS) == PLUGGED


def test_installed_entry_points_give_every_command():
    installed = {ep.name: ep.value for ep in metadata.entry_points(group=cli.COMMANDS_GROUP)}
    if not installed:
        pytest.skip("get-md installed without its entry points; pip install -e . refreshes them")
    assert installed == cli.FALLBACK_COMMANDS
    assert cli._declares_commands()
    assert _commands(cli.build_parser()) == BUILT_IN + PLUGGED


def test_source_tree_without_entry_points_falls_back(monkeypatch):
    monkeypatch.setattr(cli, "_entry_points", lambda: [])
    monkeypatch.setattr(cli, "_declares_commands", lambda: False)
    assert cli.command_targets() == cli.FALLBACK_COMMANDS
    assert _commands(cli.build_parser()) == BUILT_IN + PLUGGED


def test_plugin_entry_points_add_commands_and_broken_ones_are_unavailable(
        monkeypatch, tmp_path, capsys):
    (tmp_path / "getmd_hello_plugin.py").write_text(
        "def register(sub):\n"
        "    p = sub.add_parser('hello', help='say hello')\n"
        "    p.set_defaults(func=lambda args: print('hello from a plugin') or 0)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    group = cli.COMMANDS_GROUP
    fake = [metadata.EntryPoint("hello", "getmd_hello_plugin:register", group),
            metadata.EntryPoint("gone", "getmd_no_such_plugin:register", group),
            metadata.EntryPoint("noattr", "getmd_hello_plugin:no_such_function", group),
            metadata.EntryPoint("info", "getmd_hello_plugin:register", group)]  # built-in wins
    monkeypatch.setattr(cli, "_entry_points", lambda: fake)
    monkeypatch.setattr(cli, "_declares_commands", lambda: True)
    assert _commands(cli.build_parser()) == BUILT_IN + ["gone", "hello", "noattr"]
    assert main(["hello"]) == 0
    assert capsys.readouterr().out == "hello from a plugin\n"
    for name, why in [("gone", "No module named 'getmd_no_such_plugin'"),
                      ("noattr", "getmd_hello_plugin has no no_such_function")]:
        assert main([name, "--any", "args"]) == cli.EXIT_BAD_INPUT
        err = capsys.readouterr().err.strip()
        assert err.startswith(f"get-md: error: '{name}' is unavailable: importing ")
        assert why in err and len(err.splitlines()) == 1


def test_get_md_errors_are_known_errors(monkeypatch, capsys):
    class PluginError(GetMDError):  # a GetMDError that is no builtin ValueError
        pass

    def registrar(sub):
        p = sub.add_parser("fail-test")
        p.set_defaults(func=lambda args: (_ for _ in ()).throw(
            PluginError("in.sdf: record 2: no atoms\nsecond line")))

    monkeypatch.setitem(cli.SUBCOMMANDS, "fail-test", registrar)
    assert cli.is_input_error(PluginError("x")) and not cli.is_input_error(TypeError("x"))
    assert main(["fail-test"]) == cli.EXIT_BAD_INPUT
    assert capsys.readouterr().err == "get-md: error: in.sdf: record 2: no atoms\n"


def test_module_entry_lists_every_command():
    """``python -m get_md.cli --help`` (and the ``get-md`` script, when on PATH)."""
    runs = [[sys.executable, "-m", "get_md.cli", "--help"]]
    if shutil.which("get-md"):
        runs.append(["get-md", "--help"])
    for argv in runs:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=True).stdout
        for name in BUILT_IN + PLUGGED:
            assert f"\n    {name}" in out, (argv, name)
