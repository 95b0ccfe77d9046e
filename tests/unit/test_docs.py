"""The README documents every command, every exit code, and starts with the two commands."""

from __future__ import annotations

import importlib.util
import re
from types import ModuleType

import typer.main

from tests.support.helpers import ROOT
from ticketeval.cli.app import app
from ticketeval.errors import ExitCode

README = (ROOT / "README.md").read_text()


def test_every_command_is_in_the_readme() -> None:
    commands = typer.main.get_command(app).commands  # type: ignore[attr-defined]
    assert {"fetch", "evaluate", "run-local", "history", "describe-sizes", "register"} <= set(
        commands
    )
    for name in commands:
        assert f"ticketeval {name}" in README, name


def test_every_exit_code_is_in_the_readmes_table() -> None:
    documented = {int(code) for code in re.findall(r"^\| (\d+) \|", README, flags=re.MULTILINE)}
    assert documented == {int(code) for code in ExitCode}


def test_the_readme_starts_with_install_and_run_then_test() -> None:
    first_block = README.split("```bash\n", 1)[1].split("```", 1)[0].splitlines()
    assert first_block[0].startswith("python3 -m venv .venv && .venv/bin/pip install -e")
    assert "ticketeval evaluate --batch-size 1000 --source demo" in first_block[0]
    assert first_block[1] == ".venv/bin/python -m pytest"


def test_ci_runs_the_readmes_commands() -> None:
    ci = (ROOT / ".ci" / "run").read_text()
    first_block = README.split("```bash\n", 1)[1].split("```", 1)[0].splitlines()
    install = first_block[0].split(" && ")[1]
    assert install in ci
    assert first_block[1] in ci


# --- The layout: the README's list against the package -------------------------------------------

PACKAGE = ROOT / "src" / "ticketeval"


def readme_section(name: str) -> str:
    """The text between `<!-- name:start -->` and `<!-- name:end -->`."""
    match = re.search(rf"<!-- {name}:start -->\n(.*?)<!-- {name}:end -->", README, flags=re.S)
    assert match, f"the README has no {name} section"
    return match[1]


def package_layout() -> dict[str, set[str]]:
    """Each top-level module (`core.py`) and subpackage (`cli/`) of ticketeval, with the
    subpackage's modules; dunder modules left out."""
    layout: dict[str, set[str]] = {}
    for path in sorted(PACKAGE.iterdir()):
        if path.suffix == ".py" and not path.name.startswith("__"):
            layout[path.name] = set()
        elif path.is_dir() and (path / "__init__.py").exists():
            layout[f"{path.name}/"] = {
                module.stem for module in path.glob("*.py") if not module.name.startswith("__")
            } | {inner.name for inner in path.iterdir() if (inner / "__init__.py").exists()}
    return layout


def readme_layout() -> dict[str, set[str]]:
    listed: dict[str, set[str]] = {}
    for line in filter(str.strip, readme_section("layout").splitlines()):
        match = re.match(r"\s*- `([\w.]+/?)`(?: \(([^)]*)\))?: \S", line)
        assert match, f"not a layout line: {line!r}"
        name, modules = match[1], match[2] or ""
        assert name not in listed, f"{name} is listed twice"
        listed[name] = set(re.findall(r"`(\w+)`", modules))
    return listed


def test_no_module_is_over_500_lines() -> None:
    sizes = {
        str(path.relative_to(PACKAGE)): len(path.read_text().splitlines())
        for path in PACKAGE.rglob("*.py")
    }
    assert sizes, "no module found"
    assert {name: lines for name, lines in sizes.items() if lines > 500} == {}


def test_the_readmes_layout_lists_every_module_and_nothing_else() -> None:
    actual, listed = package_layout(), readme_layout()
    assert actual, "no package found"
    assert sorted(set(actual) - set(listed)) == [], "in the package, not in the README's layout"
    assert sorted(set(listed) - set(actual)) == [], "in the README's layout, not in the package"
    for name, modules in actual.items():
        assert sorted(modules - listed[name]) == [], f"{name}: modules missing from the README"
        assert sorted(listed[name] - modules) == [], f"{name}: the README lists modules it lacks"


# --- The generated parts: the CLI reference and the examples --------------------------------------


def readme_examples() -> ModuleType:
    """scripts/readme_examples.py, which regenerates what these tests check."""
    path = ROOT / "scripts" / "readme_examples.py"
    spec = importlib.util.spec_from_file_location("readme_examples", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_cli_reference_lists_every_command_and_every_option_of_its_help() -> None:
    examples = readme_examples()
    reference = examples.section(README, "cli-reference")
    listed = {
        match[1]: match[2]
        for match in re.finditer(r"^- `(ticketeval[\w -]*)`: (.*)$", reference, re.M)
    }
    commands = examples.commands()
    assert {"fetch", "evaluate", "run-local", "backtest", "train", "history", "report"} <= set(
        commands
    )
    for command in ["", *commands]:
        name = f"ticketeval {command}".strip()
        assert name in listed, f"{name} is missing from the README's CLI reference"
        for option in examples.options(*filter(None, [command])):
            assert option in listed[name], f"{name}: {option} is missing from the README"
    assert sorted(listed) == sorted(f"ticketeval {c}".strip() for c in ["", *commands])
    assert reference == examples.cli_reference(), "run python scripts/readme_examples.py"


def test_the_quick_start_shows_what_the_command_prints() -> None:
    examples = readme_examples()
    assert examples.section(README, "quick-start") == examples.quick_start(), (
        "run python scripts/readme_examples.py"
    )
