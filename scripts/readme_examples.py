"""Regenerate the README's generated parts from the command line itself.

- `cli-reference`: every command of `ticketeval --help` with every option of its `--help`;
- `quick-start`: what `ticketeval evaluate --batch-size 1000 --seed 42 --source demo` prints
  (demo data: the same on every machine);
- `real-session`: the training session on the real UCI file (`train`, then the heuristic
  against the trained model on the later tickets), when the file is at
  ../shared/data/incident_event_log.zip (`--real-zip PATH` elsewhere); left as it is otherwise.

Each part sits between `<!-- NAME:start -->` and `<!-- NAME:end -->` in README.md. Trial ids and
temporary paths are replaced by fixed ones. `python scripts/readme_examples.py` rewrites the
README; `--check` only reports the parts that differ (exit 1). tests/unit/test_docs.py and
tests/e2e/test_train_cli.py run the same checks.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
REAL_ZIP = ROOT.parent / "shared" / "data" / "incident_event_log.zip"
UUID = re.compile(r"\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b")
SHOWN_ID = "b2bc249b-3287-4510-b371-7769f338036b"  # every trial id in the README
WIDTH = "100"  # the README's tables: readable beside its text


def run(*args: str, env: dict[str, str | None] | None = None) -> tuple[int, str, str]:
    """The command line in this process (as the tests run it): exit code, stdout, stderr."""
    from typer.testing import CliRunner

    from ticketeval.cli.app import app

    result = CliRunner().invoke(app, list(args), env={"COLUMNS": WIDTH, **(env or {})})
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.stdout, result.stderr


def isolated(directory: Path) -> dict[str, str | None]:
    """An environment whose cache and history are in `directory`, with no setting of the
    user's (a seed, a history URL) to change what is printed."""
    return {
        "TICKETEVAL_DATA_DIR": str(directory),
        "TICKETEVAL_HISTORY_DIR": str(directory),
        "TICKETEVAL_HISTORY_URL": None,
        "TICKETEVAL_HISTORY_PATH": None,
        "TICKETEVAL_SEED": None,
        "TICKETEVAL_BATCH_SIZE": None,
    }


# --- The CLI reference ----------------------------------------------------------------------------


def help_panel_lines(*command: str) -> list[str]:
    code, stdout, _ = run(*command, "--help")
    assert code == 0, stdout
    return stdout.splitlines()


def section_lines(lines: list[str], title: str) -> list[str]:
    """The lines of one section of Click's help (`Options:`, `Commands:`), up to the next."""
    found: list[str] = []
    inside = False
    for line in lines:
        if line == title:
            inside = True
        elif inside and line and not line.startswith(" "):
            break
        elif inside:
            found.append(line)
    return found


def commands() -> list[str]:
    """The commands `ticketeval --help` lists, in its order."""
    lines = section_lines(help_panel_lines(), "Commands:")
    return [match[1] for line in lines if (match := re.match(r"  ([a-z][\w-]*)(?:\s{2,}|$)", line))]


def options(*command: str) -> list[str]:
    """The options a command's `--help` lists (a flag's other names after a slash, long names
    first), --help left out."""
    found = []
    for line in section_lines(help_panel_lines(*command), "Options:"):
        if match := re.match(r"  (-\S.*?)(?:\s{2,}|$)", line):
            declared = re.sub(r"<[^>]*>", "", match[1])  # the value's type
            names = re.findall(r"(?<![\w-])-{1,2}[\w-]+", declared)
            names = [n for n in names if n.startswith("--")] + [
                n for n in names if not n.startswith("--")
            ]
            if names != ["--help"]:
                found.append("/".join(f"`{name}`" for name in names))
    return found


def cli_reference() -> str:
    lines = [f"- `ticketeval`: {', '.join(options())}"]
    for command in commands():
        lines.append(f"- `ticketeval {command}`: {', '.join(options(command))}")
    return "\n".join(lines) + "\n"


# --- The quick start -----------------------------------------------------------------------------

QUICK_START = ("evaluate", "--batch-size", "1000", "--seed", "42", "--source", "demo")


def shown(text: str, directory: Path, cache: str = "~/.cache/ticketeval") -> str:
    """Output as the README shows it: trial ids fixed, the temporary directory a user's."""
    return UUID.sub(SHOWN_ID, text.replace(str(directory), cache))


def quick_start() -> str:
    """The quick start's command and output: the summary table down to the skill, `...`, then
    what is said on stderr."""
    with tempfile.TemporaryDirectory() as temporary:
        directory = Path(temporary)
        code, stdout, stderr = run(*QUICK_START, env=isolated(directory))
    assert code == 0, stderr
    lines = stdout.splitlines()
    last = next(i for i, line in enumerate(lines) if "skill vs the median" in line)
    printed = [*lines[: last + 1], "...", *stderr.splitlines()]
    return shown("\n".join([f"$ ticketeval {' '.join(QUICK_START)}", *printed]), directory) + "\n"


# --- The training session on the real file ------------------------------------------------------


SINCE_LAST = (
    "$ ticketeval evaluate --closed-from 2016-05-01 --closed-to 2016-06-01 --batch-size all",
    "$ ticketeval evaluate --since-last        # in cron: every ticket closed since the last trial",
)


def real_session(real_zip: Path, keep_in: Path | None = None) -> dict[str, str]:
    """`train` at the 70% point, then the heuristic against the trained model on every later
    ticket: the commands and what they print (the evaluate table trimmed as the README says);
    and what a second `evaluate --since-last` says. With `keep_in`, the session's cache,
    history and model file stay there (for a test to check the figures)."""
    with tempfile.TemporaryDirectory() as temporary:
        directory = keep_in or Path(temporary)
        env = isolated(directory)
        code, _, stderr = run("fetch", "--source", str(real_zip), env=env)
        assert code == 0, stderr
        # The model file is named as a user names it, in the working directory: its name is a
        # column of the table, whose width it sets.
        working = Path.cwd()
        os.chdir(directory)
        try:
            train = ("train", "--train-fraction", "0.7", "--out", "m.skops")
            code, trained, stderr = run(*train, env=env)
            assert code == 0, stderr
            cut = re.search(r"│ cut\s+│ (\d{4}-\d\d-\d\d) (\d\d:\d\d)", trained)
            assert cut, trained
            evaluate = (
                "evaluate", "--model", "heuristic", "--model", "m.skops",
                "--closed-from", f"{cut[1]}T{cut[2]}", "--batch-size", "all", "--seed", "1",
            )  # fmt: skip
            code, evaluated, stderr = run(*evaluate, env=env)
            assert code == 0, stderr
            for _ in range(2):  # the second finds nothing new
                code, _, said = run("evaluate", "--since-last", env=env)
                assert code == 0, said
        finally:
            os.chdir(working)
    kept = [
        line
        for line in evaluated.splitlines()
        if not re.match(r"│ (seed|source|RMSE|MSE)\s|^\s*$", line)
    ]
    by_priority = next((i for i, line in enumerate(kept) if line.endswith("by priority")), None)
    if by_priority is not None:  # the table of MAE by priority follows the comparison
        end = next(i for i in range(by_priority + 1, len(kept)) if kept[i].startswith("└"))
        kept = kept[:by_priority] + kept[end + 1 :]
    session = [
        "$ ticketeval fetch --source incident_event_log.zip",
        "$ ticketeval train --train-fraction 0.7 --out m.skops",
        *trained.splitlines(),
        "$ " + " ".join(["ticketeval", *evaluate]),
        *kept,
        "(trimmed: the seed, source and RMSE rows, and the MAE by priority)",
    ]
    # The stream is the path the data came from: shown as a user's, not this machine's.
    for path in {str(real_zip), str(real_zip.resolve())}:
        said = said.replace(path, "/data/incident_event_log.zip")
    nothing_new = [*SINCE_LAST, *said.splitlines(), "$ ticketeval backtest --every month"]
    return {
        "real-session": shown("\n".join(session), directory) + "\n",
        "since-last": shown("\n".join(nothing_new), directory) + "\n",
    }


# --- The README ----------------------------------------------------------------------------------


def blocks(real_zip: Path | None) -> dict[str, Callable[[], str]]:
    parts: dict[str, Callable[[], str]] = {
        "cli-reference": cli_reference,
        "quick-start": quick_start,
    }
    if real_zip is not None and real_zip.exists():
        session: dict[str, str] = {}

        def part(name: str) -> str:  # one session makes both parts
            if not session:
                session.update(real_session(real_zip))
            return session[name]

        parts["real-session"] = lambda: part("real-session")
        parts["since-last"] = lambda: part("since-last")
    return parts


def section_pattern(name: str) -> re.Pattern[str]:
    return re.compile(
        rf"(<!-- {name}:start -->\n(?:```\w*\n)?)(.*?)((?:```\n)?<!-- {name}:end -->)", re.S
    )


def section(readme: str, name: str) -> str:
    match = section_pattern(name).search(readme)
    if match is None:
        raise SystemExit(f"README.md has no {name} section")
    return match[2]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--check", action="store_true", help="report differences, change nothing")
    parser.add_argument("--real-zip", type=Path, default=REAL_ZIP)
    parser.add_argument("--only", action="append", help="regenerate only this part")
    arguments = parser.parse_args(argv)
    readme = README.read_text()
    differing = []
    for name, generate in blocks(arguments.real_zip).items():
        if arguments.only and name not in arguments.only:
            continue
        text = generate()
        if section(readme, name) != text:
            differing.append(name)
            match = section_pattern(name).search(readme)
            assert match is not None
            readme = readme[: match.start(2)] + text + readme[match.end(2) :]
    if arguments.check:
        for name in differing:
            print(f"README.md: {name} is not what the command prints now", file=sys.stderr)
        return 1 if differing else 0
    if differing:
        README.write_text(readme)
        print(f"README.md: regenerated {', '.join(differing)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
