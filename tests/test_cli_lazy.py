"""The CLI starts without importing its commands, and its listing says what they say."""

from __future__ import annotations

import importlib
import subprocess
import sys

import click
import pytest
from click.testing import CliRunner

from localctx.cli import COMMANDS, main
from localctx.cli.bench import BENCHMARKS, bench


@pytest.mark.parametrize(
    ("group", "table"), [(main, COMMANDS), (bench, BENCHMARKS)], ids=["main", "bench"]
)
def test_each_listed_line_is_its_commands_own_help(
    group: click.Group, table: dict[str, tuple[str, str]]
) -> None:
    for name, (target, line) in table.items():
        module, attribute = target.split(":")
        command = getattr(importlib.import_module(module), attribute)
        assert command.get_short_help_str(limit=500) == line, name


def test_help_imports_no_command_module() -> None:
    code = (
        "import sys\n"
        "from click.testing import CliRunner\n"
        "from localctx.cli import main\n"
        "result = CliRunner().invoke(main, ['--help'])\n"
        "assert result.exit_code == 0, result.output\n"
        "print(sorted(m for m in sys.modules if m.startswith('localctx')))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    loaded = eval(result.stdout)  # a printed list of names
    assert loaded == ["localctx", "localctx.cli", "localctx.cli.lazy", "localctx.errors"]


def test_the_listing_names_every_command_and_a_command_still_runs() -> None:
    runner = CliRunner()
    listing = runner.invoke(main, ["--help"])
    assert listing.exit_code == 0
    for name in COMMANDS:
        assert f"\n  {name} " in listing.output
    where = runner.invoke(main, ["where", "--help"])
    assert where.exit_code == 0 and "Print where localctx keeps" in where.output
    benches = runner.invoke(main, ["bench", "--help"])
    assert benches.exit_code == 0
    for name in BENCHMARKS:
        assert f"\n  {name} " in benches.output
    unknown = runner.invoke(main, ["nosuch"])
    assert unknown.exit_code != 0
