"""The README's command table against the CLI: every documented command and option parses, every
command is documented with its required options, and the code column names where it lives."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import typer.main
from typer.testing import CliRunner

from botfilter.cli import app

README = Path(__file__).resolve().parents[2] / "README.md"
CLI = typer.main.get_command(app)


def leaf_commands(group=CLI, path: tuple[str, ...] = ()) -> dict[tuple[str, ...], object]:
    """Every runnable command of the app by its words, e.g. ("settings", "set")."""
    if not hasattr(group, "commands"):
        return {path: group}
    out: dict[tuple[str, ...], object] = {}
    for name, sub in group.commands.items():
        out.update(leaf_commands(sub, (*path, name)))
    return out


COMMANDS = leaf_commands()


def table_rows() -> list[tuple[str, str]]:
    """(usage, code) of each row of the table under "## Commands"; usages are the first
    column's code spans, ``\\|`` unescaped."""
    section = README.read_text().split("\n## Commands\n", 1)[1].split("\n## ", 1)[0]
    rows = []
    for line in section.splitlines():
        cells = [c.strip() for c in re.split(r"(?<!\\)\|", line)[1:-1]]
        if len(cells) != 3 or not cells[0].startswith("`"):
            continue
        code = cells[2].strip("`")
        for span in re.findall(r"`([^`]+)`", cells[0]):
            usage = span.replace("\\|", "|")
            rows.append((usage if usage.startswith("botfilter ") else f"botfilter {usage}", code))
    return rows


def parse_usage(usage: str) -> tuple[tuple[str, ...], list[str], list[str]]:
    """The command's words, its documented options and positional placeholders."""
    words = usage.split()[1:]
    path: tuple[str, ...] = ()
    node = CLI
    while words and hasattr(node, "commands") and words[0] in node.commands:
        node = node.commands[words[0]]
        path, words = (*path, words[0]), words[1:]
    options = re.findall(r"--[a-z][a-z-]*", " ".join(words))
    positionals = words[:1] if words and re.fullmatch(r"[A-Z_]+", words[0]) else []  # revoke ID
    return path, options, positionals


ROWS = table_rows()


def test_the_table_is_read() -> None:
    assert len(ROWS) >= 20
    assert {usage.split()[1] for usage, _ in ROWS} >= {"demo", "score", "settings", "tokens"}


@pytest.mark.parametrize(("usage", "code"), ROWS, ids=[u for u, _ in ROWS])
def test_documented_usage_parses_against_the_commands_help(usage: str, code: str) -> None:
    path, options, positionals = parse_usage(usage)
    assert path in COMMANDS, f"no command {' '.join(path)!r}"
    command = COMMANDS[path]
    params = {opt: p for p in command.params for opt in p.opts}
    unknown = [o for o in options if o not in params]
    assert unknown == [], f"{' '.join(path)} has no option {unknown}"
    argv = [*path, *positionals]
    for option in options:
        argv += [option] if params[option].is_flag else [option, "x"]
    # --help is eager: click parses every documented option first (an unknown one is exit 2),
    # then prints the help without running the command.
    result = CliRunner().invoke(app, [*argv, "--help"])
    assert result.exit_code == 0, result.output
    assert result.output.startswith(f"Usage: botfilter {' '.join(path)} ")
    assert code == command.callback.__module__.replace(".", "/") + ".py"


def test_every_command_is_documented_with_its_required_options() -> None:
    documented: dict[tuple[str, ...], set[str]] = {}
    for usage, _ in ROWS:
        path, options, _ = parse_usage(usage)
        documented.setdefault(path, set()).update(options)
    assert sorted(set(COMMANDS) - set(documented)) == []
    missing = {
        " ".join(path): sorted(required - documented[path])
        for path, command in COMMANDS.items()
        if (required := {p.opts[0] for p in command.params if p.required and p.opts[0][:2] == "--"})
        - documented[path]
    }
    assert missing == {}
