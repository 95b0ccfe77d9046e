"""Issue 21, outputs: no output (--out, --report, --png, --log-file, the cache, the history) ever
replaces a special file, a directory or one of ticketeval's own files; a symlink is followed to
a regular file or refused; zip bombs are refused before they are extracted; passwords never
reach any output.

Special files are made here, in the test's own directory: a FIFO, a socket, a directory, a
dangling symlink and, as root, a character device node with /dev/null's numbers (never the
real /dev).
"""

from __future__ import annotations

import json
import os
import socket
import stat
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.support.helpers import expect_error, invoke, snapshot, zip_of
from ticketeval.errors import UsageError
from ticketeval.files import check_output, output_target
from ticketeval.history.urls import parse_history_url, redact_url, secrets_of

IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0


def make_fifo(path: Path) -> Path:
    os.mkfifo(path)
    return path


def make_directory(path: Path) -> Path:
    path.mkdir()
    return path


def make_device(path: Path) -> Path:
    if not IS_ROOT:
        pytest.skip("a device node can only be made as root")
    os.mknod(path, stat.S_IFCHR | 0o666, os.makedev(1, 3))  # /dev/null's numbers, in tmp
    return path


def make_dangling_symlink(path: Path) -> Path:
    path.symlink_to(path.parent / "nothing-here")
    return path


@pytest.fixture
def make_socket(tmp_path: Path) -> Iterator[Callable[[Path], Path]]:
    sockets: list[socket.socket] = []

    def make(path: Path) -> Path:
        server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        # AF_UNIX names are short (108 bytes): bind by a relative name in the test directory.
        server.bind(os.path.relpath(path))
        sockets.append(server)
        return path

    yield make
    for server in sockets:
        server.close()


SPECIAL = {
    "fifo": make_fifo,
    "directory": make_directory,
    "device": make_device,
    "dangling symlink": make_dangling_symlink,
}
KIND_WORDS = {
    "fifo": "FIFO",
    "directory": "a directory",
    "device": "character device",
    "dangling symlink": "symlink to nothing",
}


def special(kind: str, path: Path, make_socket: Callable[[Path], Path]) -> Path:
    return make_socket(path) if kind == "socket" else SPECIAL[kind](path)


def kind_of(path: Path) -> int:
    return os.lstat(path).st_mode


KINDS = [*SPECIAL, "socket"]


# --- 1. special files: every output refuses them, in one line, before any work ---------------


@pytest.mark.parametrize("kind", KINDS)
def test_train_out_refuses_a_special_file_before_training(
    kind: str, data_dir: Path, tmp_path: Path, make_socket: Callable[[Path], Path]
) -> None:
    target = special(kind, tmp_path / "target", make_socket)
    before = kind_of(target)
    line = expect_error(invoke("train", "--out", str(target)), 2, "--out")
    assert KIND_WORDS.get(kind, "socket") in line
    assert kind_of(target) == before  # not replaced by a zip


@pytest.mark.parametrize("kind", KINDS)
def test_report_out_and_evaluate_report_refuse_a_special_file(
    kind: str, data_dir: Path, tmp_path: Path, make_socket: Callable[[Path], Path]
) -> None:
    assert invoke("evaluate", "--batch-size", "100", "--seed", "1").exit_code == 0
    target = special(kind, tmp_path / "target", make_socket)
    before = kind_of(target)
    expect_error(invoke("report", "--last", "--out", str(target)), 2, "--out")
    history = snapshot(data_dir)
    expect_error(invoke("evaluate", "--batch-size", "100", "--report", str(target)), 2, "--report")
    assert snapshot(data_dir) == history  # refused before scoring: no trial recorded
    assert kind_of(target) == before


def test_a_device_node_is_never_replaced_by_any_output(data_dir: Path, tmp_path: Path) -> None:
    device = make_device(tmp_path / "full")
    assert invoke("evaluate", "--batch-size", "100").exit_code == 0
    for args in (
        ("train", "--out", str(device)),
        ("report", "--last", "--out", str(device)),
        ("evaluate", "--batch-size", "100", "--log-file", str(device)),
    ):
        expect_error(invoke(*args), 2, "character device", "not a regular file")
        assert stat.S_ISCHR(os.lstat(device).st_mode), args


def test_png_that_is_a_file_names_png(data_dir: Path, tmp_path: Path) -> None:
    assert invoke("evaluate", "--batch-size", "100").exit_code == 0
    (tmp_path / "charts").write_text("mine")
    expect_error(invoke("report", "--last", "--png", "charts"), 2, "--png", "not a directory")
    assert (tmp_path / "charts").read_text() == "mine"


def test_a_symlink_to_a_regular_file_is_followed_and_kept(data_dir: Path, tmp_path: Path) -> None:
    assert invoke("evaluate", "--batch-size", "100").exit_code == 0
    real = tmp_path / "real.html"
    real.write_text("old")
    link = tmp_path / "link.html"
    link.symlink_to(real)
    assert invoke("report", "--last", "--out", str(link)).exit_code == 0
    assert link.is_symlink() and link.resolve() == real
    assert real.read_text().startswith("<!DOCTYPE html")


def test_the_cache_refuses_a_fifo_in_its_place(demo_cache: Path, tmp_path: Path) -> None:
    data = tmp_path / "fresh"
    data.mkdir()
    make_fifo(data / "demo-events.parquet")
    expect_error(
        invoke("fetch", "--source", "demo", "--data-dir", str(data)), 2, "FIFO", "--data-dir"
    )
    assert stat.S_ISFIFO(os.lstat(data / "demo-events.parquet").st_mode)


def test_a_history_that_is_a_fifo_is_refused_not_opened(data_dir: Path, tmp_path: Path) -> None:
    fifo = make_fifo(tmp_path / "h.sqlite")
    result = invoke("history", env={"TICKETEVAL_HISTORY_PATH": str(fifo)})
    expect_error(result, 2, "FIFO", "TICKETEVAL_HISTORY_PATH")


def test_output_target_follows_or_refuses_symlinks(tmp_path: Path) -> None:
    real = tmp_path / "real"
    real.write_text("x")
    (tmp_path / "ok").symlink_to(real)
    assert output_target(tmp_path / "ok") == real
    (tmp_path / "to-dir").symlink_to(tmp_path)
    with pytest.raises(UsageError, match="directory \\(through a symlink\\)"):
        output_target(tmp_path / "to-dir", chosen_by="--out")
    assert output_target(tmp_path / "new") == tmp_path / "new"


# --- 2. never over the tool's own files --------------------------------------------------------


def test_report_refuses_to_write_over_the_history(data_dir: Path) -> None:
    assert invoke("evaluate", "--batch-size", "100").exit_code == 0
    history = data_dir / "history.sqlite"
    before = history.read_bytes()
    expect_error(invoke("report", "--last", "--out", str(history)), 2, "own", "--out")
    assert history.read_bytes() == before
    assert invoke("history", "--json").exit_code == 0


def test_train_refuses_to_write_over_the_cache(data_dir: Path) -> None:
    cache = data_dir / "events.parquet"
    before = cache.read_bytes()
    expect_error(invoke("train", "--out", str(cache)), 2, "own", "--out")
    assert cache.read_bytes() == before


def test_outputs_refuse_the_spool_results_and_a_link_to_the_history(
    data_dir: Path, tmp_path: Path
) -> None:
    assert invoke("evaluate", "--batch-size", "100").exit_code == 0
    (tmp_path / "sneaky.html").symlink_to(data_dir / "history.sqlite")
    expect_error(invoke("report", "--last", "--out", "sneaky.html"), 2, "own")
    expect_error(invoke("report", "--last", "--png", str(data_dir / "results")), 2, "own", "--png")
    expect_error(
        invoke("evaluate", "--report", str(data_dir / "spool" / "r.html")), 2, "own", "--report"
    )
    expect_error(
        invoke("evaluate", "--log-file", str(data_dir / "history.sqlite")),
        2,
        "own",
        "--log-file",
    )


def test_check_output_compares_resolved_paths(tmp_path: Path) -> None:
    own = tmp_path / "own"
    own.mkdir()
    with pytest.raises(UsageError, match="own"):
        check_output(tmp_path / "x" / ".." / "own" / "f", chosen_by="--out", own=[own])
    assert check_output(tmp_path / "f", chosen_by="--out", own=[own]) == tmp_path / "f"


def test_unwritable_output_names_the_option_that_chose_it(data_dir: Path, tmp_path: Path) -> None:
    (tmp_path / "afile").write_text("x")
    line = expect_error(invoke("train", "--out", "afile/model.skops"), 2, "--out")
    assert "--data-dir" not in line


# --- 7. passwords ------------------------------------------------------------------------------

URLS = {
    "postgresql://ada:P@ss:w/rd%S3cr3t@127.0.0.1:1/te": ["P@ss", "S3cr3t", "ss:w/rd"],
    "postgresql://ada:pa/ss@127.0.0.1:1/te": ["pa/ss"],
    # Not hex: a secret such as "abc" could appear in a trial id (a UUID) by chance.
    "postgresql://ada:xyz@secretpart@127.0.0.1:1/te": ["xyz", "secretpart"],
}


@pytest.mark.parametrize("url", URLS)
def test_a_password_not_percent_encoded_never_reaches_any_output(
    url: str, data_dir: Path, tmp_path: Path
) -> None:
    log = tmp_path / "run.log"
    result = invoke(
        "evaluate",
        "--batch-size",
        "100",
        "--json",
        "--log-file",
        str(log),
        env={"TICKETEVAL_HISTORY_URL": url},
    )
    assert result.exit_code == 7, result.output
    everything = result.stdout + result.stderr + log.read_text()
    for secret in URLS[url]:
        assert secret not in everything, (secret, everything)
    assert "percent-encode" in json.loads(result.stdout)["recorded"]["message"]
    spooled = snapshot(data_dir / "spool")
    assert spooled and not any(s.encode() in b for b in spooled.values() for s in URLS[url])
    history = invoke("history", env={"TICKETEVAL_HISTORY_URL": url})
    assert not any(s in history.output for s in URLS[url]), history.output


@pytest.mark.parametrize("url", URLS)
def test_redact_url_reads_the_raw_string(url: str) -> None:
    shown = redact_url(url)
    assert shown == "postgresql://ada:***@127.0.0.1:1/te"
    assert all(secret in " ".join(secrets_of(url)) for secret in URLS[url] if secret != "ss:w/rd")
    with pytest.raises(UsageError, match="percent-encode") as refused:
        parse_history_url(url)
    assert not any(secret in str(refused.value) for secret in URLS[url])


def test_an_encoded_password_is_accepted_and_redacted() -> None:
    url = "postgresql://ada:P%40ss%3Aw%2Frd@127.0.0.1:1/te"
    assert parse_history_url(url).backend == "postgresql"
    assert "P%40ss" not in redact_url(url)


# --- 8. zip bombs ------------------------------------------------------------------------------


def test_a_zip_bomb_is_refused_before_it_is_extracted(tmp_path: Path) -> None:
    csv = b"number,incident_state\n" + b"INC0000001,New\n" * 400_000  # 6 MB, compresses ~1000:1
    bomb = tmp_path / "bomb.zip"
    bomb.write_bytes(zip_of({"incident_event_log.csv": csv}))
    assert bomb.stat().st_size < 100_000
    expect_error(invoke("fetch", "--source", str(bomb)), 3, "TICKETEVAL_MAX_ZIP_RATIO")
    # The setting raises the limit: then the file is read (and found not to be the log).
    result = invoke("fetch", "--source", str(bomb), env={"TICKETEVAL_MAX_ZIP_RATIO": "1e6"})
    assert "TICKETEVAL_MAX_ZIP_RATIO" not in result.stderr and result.exit_code == 3


def test_a_zip_member_larger_than_the_limit_is_refused(tmp_path: Path) -> None:
    archive = tmp_path / "log.zip"
    archive.write_bytes(zip_of({"incident_event_log.csv": os.urandom(5000)}))  # ratio ~1
    expect_error(
        invoke("fetch", "--source", str(archive), env={"TICKETEVAL_MAX_CSV_BYTES": "1000"}),
        3,
        "TICKETEVAL_MAX_CSV_BYTES",
    )
