"""The trial report (ticketeval.report.build) and the per-event results it reads
(ticketeval.scoring.results).

The page is checked as a reader and a mail client would meet it: parsed with the standard
library's HTML parser (six parts, the headline's numbers, each chart's numbers against the
trial, nothing fetched from outside, size), and rendered once in headless Chromium.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from ticketeval.errors import DataError, UsageError
from ticketeval.report import page
from ticketeval.scoring import results

PRIORITIES = ("1 - Critical", "2 - High", "3 - Moderate", "4 - Low")
HEURISTIC_HOURS = {"1 - Critical": 6.0, "2 - High": 24.0, "3 - Moderate": 120.0, "4 - Low": 240.0}
SECTION_IDS = (
    "headline",
    "predicted-vs-actual",
    "error-distribution",
    "by-priority",
    "over-time",
    "worst-events",
)
CHART_IDS = (
    "chart-predicted-vs-actual",
    "chart-error-distribution",
    "chart-by-priority",
    "chart-over-time",
)
MB = 1_000_000


# --- Synthetic trials ----------------------------------------------------------------------------


def synthetic_results(n: int, seed: int = 0) -> pd.DataFrame:
    """Per-event results shaped like the real log's: mostly moderate priority, several events per
    ticket, heavy-tailed time to close in whole minutes, some zero, a few without a close."""
    rng = np.random.default_rng(seed)
    priority = rng.choice(PRIORITIES, n, p=[0.02, 0.05, 0.9, 0.03])
    actual = np.round(rng.lognormal(11.3, 1.6, n) / 60) * 60
    actual[rng.random(n) < 0.01] = 0.0
    actual[rng.random(n) < 0.005] = np.nan
    return pd.DataFrame(
        {
            "number": [f"INC{i // 6:07d}" for i in range(n)],
            "sys_updated_at": pd.Timestamp("2016-03-01")
            + pd.to_timedelta(rng.integers(0, 30_000_000, n), unit="s"),
            "priority": pd.Categorical(priority),
            "incident_state": rng.choice(["New", "Active", "Awaiting User Info", "Resolved"], n),
            "actual": actual,
            "predicted": np.array([HEURISTIC_HOURS[p] for p in priority]) * 3600.0,
        }
    )


def summary_for(frame: pd.DataFrame, **extra: Any) -> dict[str, Any]:
    """A trial summary consistent with `frame`, in the README's shape plus the optional keys."""
    scored = frame.dropna(subset=["actual"])
    error = scored["predicted"] - scored["actual"]
    median = float(scored["actual"].median())
    mae = float(error.abs().mean())
    mse = float((error**2).mean())
    baseline = float((scored["actual"] - median).abs().mean())
    by_priority = {
        str(label): {
            "num_obs": len(rows),
            "MAE": float((rows["predicted"] - rows["actual"]).abs().mean()),
            "MedAE": float((rows["predicted"] - rows["actual"]).abs().median()),
            "MSE": None,
            "R2": None,
            "RMSE": None,
        }
        for label, rows in scored.groupby(
            scored["priority"].astype(object).fillna("(none)"), observed=True
        )
    }
    # In the order of first appearance, as a groupby on a categorical may give it: the page
    # must still list priorities in their natural order.
    by_priority = dict(reversed(by_priority.items()))
    summary = {
        "id": "e3396ec6-8e2b-4a0f-8c80-58dc107da12f",
        "timestamp": "2026-11-24T21:30:44+00:00",
        "model": "heuristic",
        "seed": 42,
        "batch_size": len(frame),
        "runner": "evaluate",
        "source": {"name": "demo", "csv_sha256": "ab" * 32, "matches_uci": False, "rows": 20_000},
        "period": {"closed_from": "2016-03-01", "closed_to": None},
        "alert": {"flagged": True, "reason": "MAE 4.9 d is above the upper threshold 1.5 d"},
        "overlaps_training": False,
        "data": {
            "num_obs": len(frame),
            "num_scored": len(scored),
            "num_dropped": len(frame) - len(scored),
            "metrics": {
                "MAE": mae,
                "MedAE": float(error.abs().median()),
                "MSE": mse,
                "R2": -0.1712,
                "RMSE": math.sqrt(mse),
            },
            "metrics_ci": {"MAE": [mae * 0.95, mae * 1.05], "MedAE": None, "RMSE": [None, 2.0]},
            "target": {"mean": None, "median": median, "min": None, "max": None},
            "baseline": {"MAE": baseline, "skill": 1 - mae / baseline if baseline else None},
            "by_priority": by_priority,
            "baseline_by_priority": {label: 1000.0 * (i + 1) for i, label in enumerate(PRIORITIES)},
        },
    }
    summary.update(extra)
    return summary


def over_time_points(n: int = 14) -> list[dict[str, Any]]:
    points = []
    for i in range(n):
        mae = 86_400.0 * (1.2 + 0.05 * i)
        points.append(
            {
                "label": f"2016-{i + 1:02d}" if i < 12 else f"2017-{i - 11:02d}",
                "MAE": mae,
                "MAE_low": mae * 0.9,
                "MAE_high": mae * 1.1,
                "events": 100 * (i + 1),
                "alert": i in (9, 13),
                "too_small": i == 3,
                "current": i == n - 1,
            }
        )
    if n > 5:
        points[5]["MAE"] = None  # a period without a score leaves a gap, not a crash
    return points


THRESHOLDS = {"lower": 1.0 * 86_400, "upper": 1.6 * 86_400}


@pytest.fixture(scope="module")
def trial() -> tuple[dict[str, Any], pd.DataFrame, page.Report]:
    frame = synthetic_results(1_000)
    summary = summary_for(frame)
    built = page.build_report(summary, frame, over_time_points(), thresholds=THRESHOLDS)
    return summary, frame, built


# --- Reading the page with the standard library --------------------------------------------------


@dataclass
class Node:
    tag: str
    attrs: dict[str, str]
    children: list[Node] = field(default_factory=list)
    text: list[str] = field(default_factory=list)  # this node's own text pieces

    def walk(self) -> Iterator[Node]:
        yield self
        for child in self.children:
            yield from child.walk()

    def all_text(self) -> str:
        return " ".join(" ".join(node.text) for node in self.walk()).strip()

    def find_all(self, tag: str | None = None, **attrs: str) -> list[Node]:
        return [
            node
            for node in self.walk()
            if (tag is None or node.tag == tag)
            and all(node.attrs.get(k.replace("_", "-")) == v for k, v in attrs.items())
        ]

    def find(self, tag: str | None = None, **attrs: str) -> Node:
        found = self.find_all(tag, **attrs)
        assert found, f"no <{tag}> with {attrs}"
        return found[0]

    def classes(self) -> set[str]:
        return set(self.attrs.get("class", "").split())


VOID = {"meta", "link", "br", "img", "input", "hr", "source", "col", "area", "base", "wbr"}


class TreeBuilder(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.root = Node("#document", {})
        self.stack = [self.root]

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        node = Node(tag, {name: value or "" for name, value in attrs})
        self.stack[-1].children.append(node)
        if tag not in VOID:
            self.stack.append(node)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.stack[-1].children.append(Node(tag, {name: value or "" for name, value in attrs}))

    def handle_endtag(self, tag: str) -> None:
        for depth in range(len(self.stack) - 1, 0, -1):
            if self.stack[depth].tag == tag:
                del self.stack[depth:]
                return

    def handle_data(self, data: str) -> None:
        if data.strip():
            self.stack[-1].text.append(data.strip())


def parse(page: str) -> Node:
    builder = TreeBuilder()
    builder.feed(page)
    builder.close()
    return builder.root


def chart_rows(root: Node, chart_id: str) -> list[Node]:
    figure = root.find("figure", id=chart_id)
    table = next(t for t in figure.find_all("table") if "chart-data" in t.classes())
    return table.find("tbody").find_all("tr")


def cell_values(row: Node) -> list[float | None]:
    cells = row.find_all("td")
    return [float(td.attrs["data-value"]) if "data-value" in td.attrs else None for td in cells]


def lookup(summary: dict[str, Any], dotted: str) -> Any:
    value: Any = summary
    for key in dotted.split("."):
        value = value[key]
    return value


# --- The page ------------------------------------------------------------------------------------


def test_the_page_has_its_six_parts_and_four_charts(trial: tuple) -> None:
    _, _, built = trial
    root = parse(built.html)
    for number, section_id in enumerate(SECTION_IDS, start=1):
        section = root.find("section", id=section_id)
        assert section.find("h2").all_text().startswith(f"{number}. ")
    for chart_id in CHART_IDS:
        figure = root.find("figure", id=chart_id)
        assert figure.find_all("svg"), f"{chart_id} has no inline SVG"
        assert len(figure.find("figcaption").all_text()) > 40, f"{chart_id} has no caption"
        assert chart_rows(root, chart_id), f"{chart_id} has no numbers in its table"
    assert [chart.id for chart in built.charts] == list(CHART_IDS)
    assert root.find("table", **{"class": "worst-events"})


def test_every_number_in_the_headline_is_the_summarys(trial: tuple) -> None:
    summary, _, built = trial
    headline = parse(built.html).find("section", id="headline")
    cells = {n.attrs["data-field"]: n for n in headline.find_all() if "data-field" in n.attrs}
    durations = ("data.metrics.MAE", "data.metrics.MedAE", "data.metrics.RMSE", "data.baseline.MAE")
    counts = ("data.num_obs", "data.num_scored", "data.num_dropped")
    ratios = ("data.metrics.R2", "data.baseline.skill")
    for name in (*durations, *counts, *ratios):
        value = lookup(summary, name)
        cell = cells[name]
        assert float(cell.attrs["data-value"]) == value, name
        # Formatted here independently of the report's own formatting functions.
        if name in durations:
            expected = f"{value:,.0f} s"
        elif name in counts:
            expected = f"{value:,}"
        else:
            expected = f"{value:,.3f}"
        assert expected in cell.all_text(), (name, cell.all_text())
    low, high = summary["data"]["metrics_ci"]["MAE"]
    interval = cells["data.metrics_ci.MAE"]
    assert (float(interval.attrs["data-low"]), float(interval.attrs["data-high"])) == (low, high)
    # Intervals that are null, or half null, are left out rather than shown as numbers.
    assert "data.metrics_ci.MedAE" not in cells and "data.metrics_ci.RMSE" not in cells
    assert cells["model"].all_text() == "heuristic"
    assert "demo" in cells["source.name"].all_text()
    assert "not UCI" in cells["source.name"].all_text()
    assert cells["period"].all_text() == "2016-03-01 to the end"
    alert = headline.find(id="alert")
    assert alert.attrs["data-flagged"] == "true"
    assert summary["alert"]["reason"] in alert.all_text()


def test_nothing_on_the_page_points_outside_it(trial: tuple) -> None:
    _, _, built = trial
    root = parse(built.html)
    references = 0
    for node in root.walk():
        assert node.tag not in {"script", "link", "iframe", "object", "embed", "img", "base"}
        for name, value in node.attrs.items():
            if name.startswith("on"):
                raise AssertionError(f"event handler {name} on <{node.tag}>")
            if name in {"src", "href", "xlink:href", "srcset", "poster", "action", "data"}:
                references += 1
                assert value.startswith(("#", "data:")), f"<{node.tag} {name}={value!r}>"
            if name == "style":
                assert "url(" not in value.replace("url(#", ""), value
    assert references > 10  # the check above saw the page's anchors and the SVGs' references
    styles = " ".join(node.all_text() for node in root.find_all("style"))
    assert "@import" not in styles and "url(" not in styles
    assert "http://" not in built.html and "https://" not in built.html


def test_the_page_stays_small(trial: tuple) -> None:
    _, frame, built = trial
    assert len(frame) == 1_000
    size = len(built.html.encode("utf-8"))
    assert size < 1 * MB, f"{size:,} bytes for {len(frame):,} events"
    # Every chart is drawn, whatever the number of events.
    assert [chart.id for chart in built.charts] == list(CHART_IDS)


def test_the_priority_bars_are_the_summarys_mae_and_baseline(trial: tuple) -> None:
    summary, _, built = trial
    rows = chart_rows(parse(built.html), "chart-by-priority")
    assert [row.attrs["data-priority"] for row in rows] == sorted(summary["data"]["by_priority"])
    for row in rows:
        label = row.attrs["data-priority"]
        events, mae, baseline = cell_values(row)[1:]
        assert events == summary["data"]["by_priority"][label]["num_obs"]
        assert mae == summary["data"]["by_priority"][label]["MAE"]
        assert baseline == summary["data"]["baseline_by_priority"][label]


def test_without_baselines_per_priority_the_constant_is_the_batchs_median() -> None:
    frame = synthetic_results(2_000, seed=3)
    summary = summary_for(frame)
    del summary["data"]["baseline_by_priority"]
    built = page.build_report(summary, frame, [])
    actual = frame["actual"].to_numpy()
    constant = np.nanmedian(actual)
    rows = chart_rows(parse(built.html), "chart-by-priority")
    assert len(rows) == len(summary["data"]["by_priority"])
    for row in rows:
        label = row.attrs["data-priority"]
        here = (frame["priority"] == label).to_numpy() & ~np.isnan(actual)
        expected = np.abs(actual[here] - constant).mean()
        assert cell_values(row)[3] == pytest.approx(expected, rel=1e-12)


def test_the_over_time_chart_has_one_point_per_period_and_marks_the_alerts(trial: tuple) -> None:
    _, _, built = trial
    points = over_time_points()
    root = parse(built.html)
    rows = chart_rows(root, "chart-over-time")
    assert [row.attrs["data-label"] for row in rows] == [p["label"] for p in points]
    for row, point in zip(rows, points, strict=True):
        assert row.attrs["data-alert"] == str(point["alert"]).lower()
        assert row.attrs["data-too-small"] == str(point["too_small"]).lower()
        assert row.attrs["data-current"] == str(point["current"]).lower()
        mae, low, high, events = cell_values(row)[1:5]
        assert (mae, low, high, events) == (
            point["MAE"],
            point["MAE_low"],
            point["MAE_high"],
            point["events"],
        )
        status = row.find_all("td")[-1].all_text()
        assert ("alert" in status) == point["alert"]
        assert ("too few events" in status) == point["too_small"]
    band = root.find("figure", id="chart-over-time").find(
        **{"data-lower": repr(THRESHOLDS["lower"])}
    )
    assert float(band.attrs["data-upper"]) == THRESHOLDS["upper"]


def test_the_error_table_counts_every_scored_event_in_its_band(trial: tuple) -> None:
    _, frame, built = trial
    rows = chart_rows(parse(built.html), "chart-error-distribution")
    scored = frame.dropna(subset=["actual"])
    hours = ((scored["predicted"] - scored["actual"]) / 3600).to_numpy()
    counts = [cell_values(row)[1] for row in rows]
    assert sum(counts) == len(scored)
    labels = [row.find("td").all_text() for row in rows]
    assert counts[labels.index("within 1 h")] == ((hours > -1) & (hours <= 1)).sum()
    assert counts[labels.index("too long by 1 wk or more")] == (hours > 168).sum()


def test_the_worst_events_are_the_largest_absolute_errors(trial: tuple) -> None:
    _, frame, built = trial
    table = parse(built.html).find("table", **{"class": "worst-events"})
    rows = table.find("tbody").find_all("tr")
    scored = frame.dropna(subset=["actual"])
    error = scored["predicted"] - scored["actual"]
    expected = scored.assign(error=error).loc[error.abs().sort_values(ascending=False).index[:20]]
    assert len(rows) == page.WORST_EVENTS == 20
    got_errors = [cell_values(row)[-1] for row in rows]
    assert got_errors == pytest.approx(expected["error"].tolist(), rel=0, abs=0)
    assert [row.find_all("td")[1].all_text() for row in rows] == expected["number"].tolist()
    first = rows[0].find_all("td")
    # Durations in human units, not seconds.
    assert first[5].all_text().endswith((" d", " h", " min", " s"))
    assert first[7].all_text().startswith(("+", "-"))


def test_without_per_event_results_three_parts_say_so_and_nulls_do_not_crash() -> None:
    frame = synthetic_results(500, seed=5)
    summary = summary_for(frame, period={"closed_from": None, "closed_to": None}, alert=None)
    summary["data"]["metrics"] = {"MAE": None, "MedAE": None, "MSE": None, "R2": None, "RMSE": None}
    summary["data"]["metrics_ci"] = None
    summary["data"]["baseline"] = {"MAE": None, "skill": None}
    summary["data"]["by_priority"]["2 - High"]["MAE"] = None
    summary["source"] = None
    built = page.build_report(summary, None, [], thresholds=None)
    root = parse(built.html)
    for section_id in ("predicted-vs-actual", "error-distribution", "worst-events"):
        assert page.NOT_KEPT in root.find("section", id=section_id).all_text()
    assert "No earlier trials" in root.find("section", id="over-time").all_text()
    assert [chart.id for chart in built.charts] == ["chart-by-priority"]
    headline = root.find("section", id="headline")
    mae = headline.find(**{"data-field": "data.metrics.MAE"})
    assert mae.all_text() == "n/a" and "data-value" not in mae.attrs
    rows = chart_rows(root, "chart-by-priority")
    high = next(row for row in rows if row.attrs["data-priority"] == "2 - High")
    assert cell_values(high)[2] is None and high.find_all("td")[2].all_text() == "n/a"


def test_every_string_from_the_data_is_escaped() -> None:
    hostile = '<script>alert("x")</script> $\\frac{$ &amp;'
    frame = synthetic_results(300, seed=7)
    frame["priority"] = frame["priority"].astype(str)
    frame.loc[frame["priority"] == "4 - Low", "priority"] = hostile
    frame["number"] = '"><img src=x onerror=alert(1)>'
    summary = summary_for(frame, model=hostile, alert={"flagged": True, "reason": hostile})
    points = over_time_points(3)
    points[0]["label"] = hostile
    built = page.build_report(summary, frame, points, thresholds=THRESHOLDS)
    assert "<script" not in built.html.lower() and "<img" not in built.html.lower()
    root = parse(built.html)
    assert not root.find_all("script") and not root.find_all("img")
    # The parser gives back the strings exactly: escaped, not mangled or dropped.
    assert hostile in root.find("section", id="headline").find(id="alert").all_text()
    assert hostile in [row.attrs["data-priority"] for row in chart_rows(root, "chart-by-priority")]
    assert chart_rows(root, "chart-over-time")[0].attrs["data-label"] == hostile
    worst = root.find("table", **{"class": "worst-events"}).find("tbody").find_all("tr")
    assert worst[0].find_all("td")[1].all_text() == frame["number"].iloc[0]


def test_write_report_writes_the_page_and_one_png_per_chart(trial: tuple, tmp_path: Path) -> None:
    _, _, built = trial
    written = page.write_report(built, tmp_path / "out" / "trial.html", tmp_path / "png")
    assert written[0] == tmp_path / "out" / "trial.html"
    assert written[0].read_text(encoding="utf-8") == built.html
    assert [path.name for path in written[1:]] == [f"{c}.png" for c in CHART_IDS]
    for path in written[1:]:
        assert path.read_bytes().startswith(b"\x89PNG\r\n\x1a\n") and path.stat().st_size > 5_000
    leftovers = [p for p in tmp_path.rglob("*") if p.name.endswith(".tmp")]
    assert leftovers == []
    assert page.write_report(built, None, None) == []


def test_bad_inputs_are_reported_as_ticketeval_errors() -> None:
    with pytest.raises(UsageError):
        page.build_report(None, None, [])  # type: ignore[arg-type]
    with pytest.raises(DataError, match="predicted"):
        page.build_report({}, pd.DataFrame({"actual": [1.0]}), [])


# --- In a browser --------------------------------------------------------------------------------


# --- Per-event results ---------------------------------------------------------------------------


def test_results_round_trip_compactly(tmp_path: Path) -> None:
    frame = synthetic_results(5_000, seed=11)
    path = results.write_results(tmp_path / "results", "trial-1", frame, model="heuristic")
    assert path == tmp_path / "results" / "trial-1.parquet"
    back = results.read_results(path)
    assert list(back.columns) == list(results.RESULT_COLUMNS)
    for name in ("number", "priority", "incident_state"):
        assert back[name].astype(str).tolist() == frame[name].astype(str).tolist()
    pd.testing.assert_series_equal(back["actual"], frame["actual"])  # NaN kept as NaN
    pd.testing.assert_series_equal(back["predicted"], frame["predicted"])
    # Same instants; the unit (ns, us) follows the pandas version.
    pd.testing.assert_series_equal(
        back["sys_updated_at"], frame["sys_updated_at"], check_dtype=False
    )
    assert back.attrs == {"trial_id": "trial-1", "model": "heuristic"}
    metadata = pq.ParquetFile(path).metadata
    for index, name in enumerate(metadata.schema.names):
        column = metadata.row_group(0).column(index)
        assert column.compression == "ZSTD", name
        if name in ("number", "priority", "incident_state"):
            assert "RLE_DICTIONARY" in column.encodings, name


def test_a_failed_write_leaves_the_previous_results_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = synthetic_results(100, seed=1)
    path = results.write_results(tmp_path, "trial", first)
    real_write = pq.write_table

    def write_then_fail(table: Any, where: Any, **options: Any) -> None:
        real_write(table, where, **options)  # the bytes are written...
        raise OSError("No space left on device")  # ...then the disk fills before the rename

    monkeypatch.setattr(results.pq, "write_table", write_then_fail)
    with pytest.raises(OSError, match="No space"):
        results.write_results(tmp_path, "trial", synthetic_results(200, seed=2))
    assert len(results.read_results(path)) == 100
    assert sorted(p.name for p in tmp_path.iterdir()) == ["trial.parquet"]


def test_prune_keeps_the_newest(tmp_path: Path) -> None:
    frame = synthetic_results(20)
    paths = [results.write_results(tmp_path, f"trial-{i}", frame) for i in range(5)]
    for age, path in enumerate(reversed(paths)):  # trial-4 newest, trial-0 oldest
        os.utime(path, (1_700_000_000 - 3600 * age, 1_700_000_000 - 3600 * age))
    other = tmp_path / "notes.txt"
    other.write_text("not a results file")
    assert results.prune_results(tmp_path, None) == []
    assert results.prune_results(tmp_path, -1) == []
    assert results.prune_results(tmp_path, 2) == [paths[2], paths[1], paths[0]]
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "notes.txt",
        "trial-3.parquet",
        "trial-4.parquet",
    ]
    assert results.prune_results(tmp_path, 0) == [paths[4], paths[3]]
    assert [p.name for p in tmp_path.iterdir()] == ["notes.txt"]
    assert results.prune_results(tmp_path / "missing", 1) == []


def test_the_next_write_removes_temporary_files_a_killed_writer_left(tmp_path: Path) -> None:
    abandoned = tmp_path / ".trial.parquet.abc123.tmp"
    in_progress = tmp_path / ".other.parquet.def456.tmp"
    for path in (abandoned, in_progress):
        path.write_bytes(b"PAR1 half")
    os.utime(abandoned, (1_000_000_000, 1_000_000_000))
    frame = pd.DataFrame({name: [] for name in results.RESULT_COLUMNS})
    results.write_results(tmp_path, "next", frame)
    assert not abandoned.exists()
    assert in_progress.exists()


@pytest.mark.parametrize("damage", ["garbage", "truncated", "missing", "no column"])
def test_unreadable_results_are_one_line_data_errors(tmp_path: Path, damage: str) -> None:
    path = tmp_path / "trial.parquet"
    if damage == "garbage":
        path.write_bytes(b"this is not parquet at all\n" * 10)
    elif damage == "truncated":
        whole = results.write_results(tmp_path, "whole", synthetic_results(500)).read_bytes()
        path.write_bytes(whole[: len(whole) // 2])
    elif damage == "no column":
        pq.write_table(__import__("pyarrow").table({"number": ["INC1"], "actual": [1.0]}), path)
    with pytest.raises(DataError) as raised:
        results.read_results(path)
    message = str(raised.value)
    assert str(path) in message and "\n" not in message


def test_unsafe_trial_ids_and_incomplete_frames_are_refused(tmp_path: Path) -> None:
    frame = synthetic_results(10)
    for trial_id in ("../escape", "a/b", ".hidden", ""):
        with pytest.raises(UsageError):
            results.write_results(tmp_path, trial_id, frame)
    with pytest.raises(DataError, match="incident_state"):
        results.write_results(tmp_path, "t", frame.drop(columns="incident_state"))
    assert list(tmp_path.iterdir()) == []


def edge_case(name: str) -> tuple[pd.DataFrame, list[dict[str, Any]], dict[str, Any] | None]:
    frame = synthetic_results(50, seed=13)
    points = over_time_points(4)
    thresholds: dict[str, Any] | None = THRESHOLDS
    if name == "one event":
        frame = frame.dropna().iloc[:1]
    elif name == "all the same":
        frame["actual"] = frame["predicted"] = 3600.0
    elif name == "negative and zero durations":
        frame["actual"] = np.where(np.arange(50) % 2, -120.0, 0.0)
    elif name == "no actual at all":
        frame["actual"] = np.nan
    elif name == "no scores over time":
        points = [{**p, "MAE": None, "MAE_low": None, "MAE_high": None} for p in points[:1]]
        thresholds = {"lower": None, "upper": 86_400.0}
    elif name == "missing labels and time zones":
        frame["priority"] = frame["priority"].astype(object).where(np.arange(50) % 3 > 0)
        frame["sys_updated_at"] = frame["sys_updated_at"].dt.tz_localize("UTC")
        frame = frame.drop(columns=["incident_state"])
    return frame, points, thresholds


# A warning (an empty slice's mean, a singular axis) would mean a chart drawn from nothing.
@pytest.mark.filterwarnings("error::UserWarning", "error::RuntimeWarning")
@pytest.mark.parametrize(
    "name",
    [
        "one event",
        "all the same",
        "negative and zero durations",
        "no actual at all",
        "no scores over time",
        "missing labels and time zones",
    ],
)
def test_awkward_trials_still_give_a_whole_page(name: str) -> None:
    frame, points, thresholds = edge_case(name)
    summary = summary_for(frame)
    built = page.build_report(summary, frame, points, thresholds=thresholds)
    root = parse(built.html)
    for section_id in SECTION_IDS:
        assert root.find("section", id=section_id).all_text()
    scored = frame["actual"].notna().sum()
    if scored:
        worst = root.find("table", **{"class": "worst-events"}).find("tbody").find_all("tr")
        assert len(worst) == min(20, scored)
    else:
        assert page.NOTHING_SCORED in root.find("section", id="worst-events").all_text()
    if name == "missing labels and time zones":
        labels = [row.attrs["data-priority"] for row in chart_rows(root, "chart-by-priority")]
        assert labels[-1] == "(none)"
