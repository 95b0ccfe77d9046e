"""Issue 21, unclear messages, end to end (the installed executable): a report with an unusable
HOME prints no matplotlib warning; a narrow terminal (a pty) wraps the champion table."""

from __future__ import annotations

from pathlib import Path

from tests.support.helpers import invoke, run_ticketeval, ticketeval_executable

EVALUATE = ("evaluate", "--batch-size", "100", "--seed", "1")


def test_report_with_an_unusable_home_prints_no_matplotlib_warning(
    data_dir: Path, tmp_path: Path
) -> None:
    assert invoke(*EVALUATE).exit_code == 0
    home = tmp_path / "home-is-a-file"
    home.write_text("x")
    result = run_ticketeval(
        "report", "--last", "--out", "r.html", env={"HOME": str(home), "XDG_CONFIG_HOME": ""}
    )
    assert result.returncode == 0, result.stderr
    assert "matplotlib" not in result.stderr.lower(), result.stderr
    assert Path("r.html").exists()


CONSTANT_MODEL = """
import numpy as np


def model(batch):
    return np.full(len(batch), 1_014_343.0)
"""


def test_a_narrow_terminal_wraps_the_champion_table_never_cuts_it(
    data_dir: Path, model_dir: Path
) -> None:
    import fcntl
    import os
    import pty
    import re
    import struct
    import subprocess
    import termios

    (model_dir / "constant.py").write_text(CONSTANT_MODEL)
    leader, follower = pty.openpty()  # a terminal, 60 columns wide
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 60, 0, 0))
    process = subprocess.Popen(
        [ticketeval_executable(), *EVALUATE, "--model", "heuristic", "--model", "constant:model"],
        stdin=subprocess.DEVNULL,
        stdout=follower,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "COLUMNS": "60", "TERM": "xterm"},
    )
    os.close(follower)
    chunks = []
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # the terminal closed with the process
            break
        if not chunk:
            break
        chunks.append(chunk)
    assert process.wait(timeout=120) == 0
    os.close(leader)
    shown = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", b"".join(chunks).decode())
    assert "…" not in shown, shown
    assert max(len(line) for line in shown.splitlines()) <= 60, shown
    assert "heuristic" in shown and "constant:model" in shown
