"""`stam-label inspect`: the text summary and costs, the PNG chart, video links, and the HTML page
in a real headless Chromium (sorting, filtering and highlighting run in the page's own script)."""
from __future__ import annotations

import base64
import collections
import html
import io
import logging
import os
import re
import shutil
import subprocess
import urllib.parse
import urllib.request
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from conftest import job_config as _config
from click.testing import CliRunner
from PIL import Image

from jobs.cli.inspect import inspect_command
from jobs.pipeline import run_job
from jobs.runs import write_run_record
from jobs.schema import output_schema
from jobs.segments import VIDEO_LEVEL
from jobs.table import LabelTable
from jobs.tools.report import (BAR_COLOUR, CHART_DPI, SUMMARY_COLUMNS, THUMB, format_costs, label_figure, load,
                               render_html, run_costs, video_href, write_html, write_plot)
from jobs.tools.samples import make_sample_video, write_video

FRAMES = 8  # the tiny model samples 8 frames
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic"]


# ---- the one place these tests write the label table directly ---------------------------
def write_rows(output: Path, rows: list[dict], run_record: dict | None = None) -> None:
    """Commit ``rows`` (dicts with the output schema's keys) to the label table at OUTPUT as one
    run (``rows[0]["run_id"]``), with ``run_record`` as that run's record when given."""
    table = LabelTable(str(output))
    run_id = rows[0]["run_id"]
    data = pa.Table.from_pylist(rows, schema=output_schema())
    if hasattr(table, "commit"):  # the Delta Lake table
        table.ensure_created(output_schema())
        table.commit(data, run_id=run_id, seq=0)
    else:  # the first layout: one Parquet part per run
        table.write_part(run_id, 0, data)
    if run_record is not None:
        write_run_record(table, run_id, {"run_id": run_id, **run_record})


# ---- Chromium ----------------------------------------------------------------------------
def chromium_path() -> str | None:
    for name in ("/usr/bin/chromium", "chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    return None


@pytest.fixture
def chromium() -> str:
    """Chromium's path; with CI=1 a missing browser fails the test instead of skipping it."""
    path = chromium_path()
    if path is None:
        message = ("Chromium is not installed, so the report page cannot be checked in a browser: "
                   "apt-get install -y chromium")
        if os.environ.get("CI") == "1":
            pytest.fail(message + " (CI=1: browser tests are required)")
        pytest.skip(message)
    return path


def browser(chromium: str, profile: Path, *args: str) -> subprocess.CompletedProcess:
    """One headless Chromium run with a fresh profile; stdout is e.g. the --dump-dom output."""
    cmd = [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return done


class Cards(HTMLParser):
    """The page's video cards as the browser left them: attributes in document order, and texts by id."""

    def __init__(self, dom: str):
        super().__init__()
        self.cards: list[dict] = []
        self.text: dict[str, str] = {}
        self.body: dict = {}
        self._id: str | None = None
        self.feed(dom)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "body":
            self.body = attrs
        if tag == "section" and "video" in (attrs.get("class") or "").split():
            self.cards.append(attrs)
        self._id = attrs.get("id")

    def handle_data(self, data):
        if self._id:
            self.text[self._id] = self.text.get(self._id, "") + data

    def handle_endtag(self, tag):
        self._id = None

    def shown(self) -> list[str]:
        """Names of the visible cards, in page order."""
        return [Path(c["data-uri"]).name for c in self.cards if "hidden" not in c]

    def low(self) -> set[str]:
        return {Path(c["data-uri"]).name for c in self.cards if "low" in c["class"].split()}


def render_in_chromium(chromium: str, page: Path, fragment: str, profile: Path) -> Cards:
    """The page's DOM after its script applied the view in the URL fragment."""
    done = browser(chromium, profile, "--virtual-time-budget=5000", "--dump-dom", page.as_uri() + fragment)
    cards = Cards(done.stdout)
    assert cards.body.get("data-ready") == "1", f"the page script did not run: {done.stderr[-2000:]}"
    return cards


def make_magenta_video(path: Path, seconds: float = 1.0, fps: int = 8, size=(96, 64)) -> Path:
    """A clip that is magenta everywhere but a small moving white square: easy to find in a screenshot."""
    width, height = size

    def frames():
        for i in range(int(seconds * fps)):
            img = np.empty((height, width, 3), np.uint8)
            img[:] = (255, 0, 255)
            img[4:12, 4 + 2 * i: 12 + 2 * i] = 255
            yield img

    return write_video(path, frames(), size=size, fps=fps)


@pytest.fixture(scope="module")
def labelled(tmp_path_factory, tiny_weights, ray_head) -> Path:
    root = tmp_path_factory.mktemp("report")
    videos = root / "videos"
    videos.mkdir()
    make_sample_video(videos / "a.mp4", seed=1, seconds=1.0, fps=8, size=(96, 64))
    make_magenta_video(videos / "magenta.mp4")
    (videos / "broken <b>.mp4").write_text("not a video")  # its name must be shown escaped
    out = root / "labels"
    run_job(_config(tiny_weights, videos, out, ray_head))
    return out




def current_rows(output: Path) -> dict[str, dict]:
    return {Path(r["video_uri"]).name: r for r in LabelTable(str(output)).read_current().to_pylist()}


def with_top(row: dict, labels: list[str], top1: float) -> dict:
    """The row with other labels and a chosen top-1 score (each next score half the one before)."""
    return {**row, "labels": labels, "scores": [top1 * 0.5 ** i for i in range(len(labels))]}


@pytest.fixture(scope="module")
def curated(labelled, tmp_path_factory) -> Path:
    """Real rows of the labelled videos with known labels and scores, and a copy of a.mp4 under a name
    that needs percent-encoding: a, c #1 and magenta labelled (top-1 0.9, 0.5, 0.12), broken failed."""
    root = tmp_path_factory.mktemp("report-curated")
    rows = current_rows(labelled)
    copy = root / "videos" / "c #1.mp4"
    copy.parent.mkdir()
    shutil.copyfile(rows["a.mp4"]["video_uri"], copy)
    out = root / "labels"
    write_rows(out, [
        with_top(rows["a.mp4"], ["archery", "zumba", "abseiling", "bowling", "yoga"], 0.9),
        with_top({**rows["a.mp4"], "video_uri": str(copy)}, ["abseiling", "archery", "bowling", "yoga", "zumba"], 0.5),
        with_top(rows["magenta.mp4"], ["zumba", "archery", "bowling", "abseiling", "yoga"], 0.12),
        rows["broken <b>.mp4"],
    ])
    return out


# ---- the text summary and costs ------------------------------------------------------------
def test_text_summary(labelled):
    rows = current_rows(labelled)
    result = CliRunner().invoke(inspect_command, [str(labelled)])
    assert result.exit_code == 0, result.output
    out = result.output
    assert "3 videos, 3 rows, 1 run" in out and "status: 2 ok, 1 error" in out
    assert "error kinds:" in out and "1  format_error: e.g." in out and "broken <b>.mp4" in out
    for name in ("a.mp4", "magenta.mp4"):
        assert re.search(rf"^\s+\d+\s+{re.escape(rows[name]['labels'][0])}$", out, re.M), out
    # A completed run records at least its wall time: cost per video of the 3 videos it labelled.
    assert re.search(r"^\s+wall time\s+[\d.]+ (s|min|h) per video .*over 3 videos", out, re.M), out

    missing = CliRunner().invoke(inspect_command, [str(labelled.parent / "nothing")])
    assert missing.exit_code == 1 and "no committed label rows" in missing.output


def test_costs_from_run_records():
    full = {"counts": {"ok": 90, "error": 10},
            "totals": {"wall_s": 200.0, "decode_cpu_s": 1200.0, "model_s": 100.0, "footage_s": 7200.0}}
    old = {"counts": {"ok": 50, "error": 0}, "elapsed_s": 50.0}  # before totals were recorded
    killed = {"counts": {"ok": 7}}  # no elapsed time: not counted
    lines = {c.name: c for c in run_costs([full, old, killed])}
    assert lines["wall time"].videos == 150 and lines["wall time"].per_video == pytest.approx(250 / 150)
    assert lines["wall time"].per_footage_hour == pytest.approx(200 / 2)  # only the run with footage
    assert lines["decode CPU"].per_video == pytest.approx(12.0) and lines["decode CPU"].per_footage_hour == 600
    assert lines["model"].per_video == pytest.approx(1.0) and lines["model"].videos == 100

    text = "\n".join(format_costs([full], hourly_price=3.6))
    assert re.search(r"wall time\s+2\.00 s per video\s+1\.7 min per footage hour", text), text
    assert re.search(r"decode CPU\s+12\.0 s per video\s+10\.0 min per footage hour", text), text
    assert "0.002000 per video at 3.6 per cluster hour, 0.1000 per footage hour" in text

    partial = {"counts": {"ok": 4}, "totals": {"model_s": "n/a", "wall_s": 8}}  # odd values are ignored
    assert [(c.name, c.per_video, c.per_footage_hour) for c in run_costs([partial])] == [("wall time", 2.0, None)]
    assert "footage not recorded" in "\n".join(format_costs([partial]))
    assert format_costs([]) == format_costs([{"run_id": "x", "counts": {}}]) == \
        ["cost: not recorded in the run records (no totals or elapsed time)"]


def test_cost_printed_from_the_tables_run_record(labelled, tmp_path):
    row = current_rows(labelled)["a.mp4"]
    out = tmp_path / "labels"
    write_rows(out, [row], {"started_at": "2026-01-01T00:00:00+00:00", "status": "completed",
                            "counts": {"ok": 1, "error": 0},
                            "totals": {"wall_s": 30.0, "decode_cpu_s": 90.0, "model_s": 6.0, "footage_s": 3600.0}})
    result = CliRunner().invoke(inspect_command, [str(out), "--hourly-price", "12"])
    assert result.exit_code == 0, result.output
    assert re.search(r"wall time\s+30\.0 s per video\s+30\.0 s per footage hour", result.output), result.output
    assert re.search(r"decode CPU\s+1\.5 min per video\s+1\.5 min per footage hour", result.output)
    assert re.search(r"model\s+6\.00 s per video", result.output)
    assert "0.100000 per video at 12 per cluster hour" in result.output


def test_summary_of_an_s3_output(labelled, local_s3):
    local_s3.create_bucket("inspect")
    for path in labelled.rglob("*"):
        if path.is_file():
            local_s3.upload(path, f"s3://inspect/labels/{path.relative_to(labelled)}")
    _, remote = load("s3://inspect/labels", SUMMARY_COLUMNS)
    _, local = load(str(labelled), SUMMARY_COLUMNS)
    assert (remote.videos, remote.status, remote.labels, remote.error_kinds, len(remote.runs)) == \
        (local.videos, local.status, local.labels, local.error_kinds, 1)


# ---- the chart -----------------------------------------------------------------------------
def test_plot_png_has_one_bar_per_label(tmp_path):
    counts = collections.Counter({"abseiling": 5, "archery": 3, "zumba": 1})
    path = tmp_path / "labels.png"
    write_plot(counts, str(path))
    image = np.asarray(Image.open(path).convert("RGB"))
    bar = np.all(image == BAR_COLOUR, axis=-1)
    rows = np.flatnonzero(bar.any(axis=1))
    bands = np.split(rows, np.flatnonzero(np.diff(rows) > 1) + 1)
    assert len(bands) == 3  # three bars, top to bottom in frequency order
    lengths = [bar[band[len(band) // 2]].sum() for band in bands]
    assert lengths[0] > lengths[1] > lengths[2]
    assert lengths[1] / lengths[0] == pytest.approx(3 / 5, abs=0.02)
    # Every bar starts at the same x (the axis), and the PNG is the figure's size at its dpi.
    starts = {int(np.flatnonzero(bar[band[len(band) // 2]])[0]) for band in bands}
    assert len(starts) == 1
    width, height = label_figure(counts).get_size_inches() * CHART_DPI
    assert Image.open(path).size == (round(width), round(height))


def test_chart_has_labelled_axes_and_counts():
    counts = collections.Counter({"abseiling": 5, "archery": 3, "zumba": 1, "yoga": 1})
    fig = label_figure(counts, top=3)
    (ax,) = fig.axes
    assert ax.get_title() == "Top-1 label frequencies (10 labelled videos, 4 labels)"
    assert ax.get_xlabel() == "videos (top-1 label); 1 more label (1 video) not drawn"
    assert ax.get_ylabel() == "label"
    assert [t.get_text() for t in ax.get_yticklabels()] == ["abseiling", "archery", "zumba"]  # ties: first seen
    assert [p.get_width() for p in ax.patches] == [5, 3, 1]
    assert [t.get_text() for t in ax.texts] == ["5", "3", "1"]  # the counts at the bars' ends
    assert ax.yaxis_inverted()  # most frequent on top
    assert all(float(t).is_integer() for t in ax.get_xticks())  # whole videos on the count axis
    assert all(tuple(round(c * 255) for c in p.get_facecolor()[:3]) == BAR_COLOUR for p in ax.patches)

    empty = label_figure(collections.Counter()).axes[0]
    assert len(empty.patches) == 0 and [t.get_text() for t in empty.texts] == ["no labelled videos"]


# ---- links ---------------------------------------------------------------------------------
def test_local_video_links_are_percent_encoded_file_uris(tmp_path):
    for name in ("a b.mp4", "c #1.mp4", "what?.mp4", "100%.mp4", "broken <b>.mp4", "naïve é.mp4"):
        path = tmp_path / name
        path.write_bytes(name.encode())
        href = video_href(str(path))
        parts = urllib.parse.urlsplit(href)
        assert parts.scheme == "file" and not parts.query and not parts.fragment, href
        assert re.fullmatch(r"file:///[A-Za-z0-9_%/.~-]+", href), href  # nothing left unencoded
        assert urllib.parse.unquote(parts.path) == str(path)
        with urllib.request.urlopen(href) as f:  # the browser's view: the link opens that very file
            assert f.read() == name.encode()
    assert video_href("relative/x.mp4") == Path("relative/x.mp4").absolute().as_uri()
    assert video_href("s3://bucket/key.mp4") is None  # without --presign: text, no link


# ---- the page ------------------------------------------------------------------------------
def chart_png(page: str) -> Image.Image:
    found = re.findall(r"<img class='chart' src='data:image/png;base64,([A-Za-z0-9+/=]+)'", page)
    assert len(found) == 1
    return Image.open(io.BytesIO(base64.b64decode(found[0])))


def test_html_page(labelled, tmp_path):
    rows = current_rows(labelled)
    page_path = tmp_path / "report.html"
    result = CliRunner().invoke(inspect_command, [str(labelled), "--html", str(page_path),
                                                  "--plot", str(tmp_path / "l.png"), "--low-confidence", "0.25"])
    assert result.exit_code == 0, result.output
    page = page_path.read_text()
    assert page.count("<img class='thumb' src='data:image/jpeg;base64,") == 2 * FRAMES
    assert "frame mismatch" not in page and "thumbnails unavailable" not in page  # re-read == labelled frames
    assert "http://" not in page and "https://" not in page and "<script src" not in page  # nothing to load
    labels = {rows[n]["labels"][0] for n in ("a.mp4", "magenta.mp4")}
    # The chart: the same PNG as --plot, one bar per distinct top-1 label.
    chart = chart_png(page)
    assert chart.tobytes() == Image.open(tmp_path / "l.png").tobytes()
    bar_rows = np.flatnonzero(np.all(np.asarray(chart.convert("RGB")) == BAR_COLOUR, axis=-1).any(axis=1))
    assert len(np.split(bar_rows, np.flatnonzero(np.diff(bar_rows) > 1) + 1)) == len(labels)
    for name in ("a.mp4", "magenta.mp4"):
        for label in rows[name]["labels"]:
            assert html.escape(label) in page
        assert f"href='{Path(rows[name]['video_uri']).as_uri()}'" in page
    # One card per video, the failed one too, with what the page script sorts and filters on.
    assert page.count("<section class='video") == 3
    assert "Videos (2 labelled, 1 failed)" in page and "format_error" in page
    assert "broken &lt;b&gt;.mp4" in page and "<b>" not in page
    assert "broken%20%3Cb%3E.mp4'" in page  # its link, percent-encoded
    assert "<option value='error'>error</option>" in page and "<option value='ok'>ok</option>" in page
    # The threshold is on the page; the tiny random model is never confident: both labelled cards are low.
    assert "value='0.25'" in page and "<b id='threshold-shown'>0.25</b>" in page
    assert len(re.findall(r"<section class='video low'", page)) == 2
    assert "<section class='video failed'" in page

    capped = render_html(*load(str(labelled)), max_videos=1)
    assert capped.count("<img class='thumb'") == FRAMES
    assert "Showing the first 1 of 2 labelled videos" in capped and "1 left out" in capped


def test_html_windowed_strips(windowed_labels, tmp_path):
    page_path = tmp_path / "w.html"
    summary = write_html(str(windowed_labels), str(page_path), low_confidence=1.0)
    assert (summary.videos, summary.rows, summary.windows) == (1, 4, {"ok": 3})
    rows = LabelTable(str(windowed_labels)).read_current().to_pylist()
    assert [r["segment_index"] for r in rows if r["segment_index"] == VIDEO_LEVEL] == [VIDEO_LEVEL]
    page = page_path.read_text()
    # One strip per window (0-2, 2-4, 4-5 s), each re-read with the window's bounds and matching.
    assert page.count("<img class='thumb'") == 3 * FRAMES
    assert "frame mismatch" not in page
    assert "window 0: 0.0–2.0 s" in page and "window 2: 4.0–5.0 s" in page and "3 windows" in page
    # Every window is highlighted under a threshold of 1, and carries its score for the page script.
    assert len(re.findall(r"<div class='window low' data-score='[\d.]+'>", page)) == 3


def test_html_says_when_frames_differ(labelled, tmp_path):
    """A row whose frame_indices no longer match what decoding gives is flagged on the page."""
    rows = list(current_rows(labelled).values())
    for row in rows:
        if row["video_uri"].endswith("magenta.mp4"):
            row["frame_indices"] = [i + 1 for i in row["frame_indices"]]
    tampered = tmp_path / "tampered"
    write_rows(tampered, rows)
    page = render_html(*load(str(tampered)))
    assert page.count("frame mismatch") == 1
    assert re.search(r"magenta\.mp4.*?frame mismatch", page, re.S)


def test_presigned_links_for_s3_videos(labelled, local_s3, tmp_path, caplog):
    rows = current_rows(labelled)
    local_s3.create_bucket("report-videos")
    source = Path(rows["magenta.mp4"]["video_uri"])
    uri = "s3://report-videos/clips/magenta clip #1.mp4"
    local_s3.upload(source, uri)
    out = tmp_path / "labels"
    write_rows(out, [{**rows["magenta.mp4"], "video_uri": uri}, rows["a.mp4"]])

    page_path = tmp_path / "signed.html"
    caplog.set_level(logging.DEBUG)  # everything the libraries log while the page is made
    result = CliRunner().invoke(inspect_command, [str(out), "--html", str(page_path), "--presign",
                                                  "--presign-expires", "600", "--workers", "1"])
    assert result.exit_code == 0, result.output
    assert "presigned" in result.output
    page = page_path.read_text()
    card = re.search(r"<section class='[^']*' data-uri='s3://report-videos/[^']*'.*?</section>", page, re.S)
    assert card, page[:2000]
    href = html.unescape(re.search(r"<a class='open' href='([^']+)'", card.group(0)).group(1))
    query = urllib.parse.parse_qs(urllib.parse.urlsplit(href).query)
    assert query["X-Amz-Expires"] == ["600"] and "X-Amz-Signature" in query
    assert urllib.parse.unquote(urllib.parse.urlsplit(href).path).endswith("clips/magenta clip #1.mp4")
    signature = query["X-Amz-Signature"][0]
    for text in (result.output, caplog.text):  # the URL never reaches the terminal or the logs
        assert signature not in text and "X-Amz-Signature" not in text and href not in text
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(href, timeout=30) as f:  # the link works as is (the local S3 server checks it)
        assert f.read() == source.read_bytes()
    assert "valid until" in page and "thumbnails unavailable" not in page  # thumbnails read from S3 too

    plain = tmp_path / "plain.html"
    result = CliRunner().invoke(inspect_command, [str(out), "--html", str(plain), "--workers", "1"])
    assert result.exit_code == 0, result.output
    page = plain.read_text()
    assert "X-Amz" not in page and "http://" not in page
    card = re.search(r"<section class='[^']*' data-uri='s3://report-videos/[^']*'.*?</section>", page, re.S).group(0)
    assert "<a class='open'" not in card and "--presign" in card
    assert f"<span class='uri'>{html.escape(uri)}</span>" in card


def test_page_sorts_filters_and_highlights_in_chromium(curated, chromium, tmp_path):
    page = tmp_path / "report.html"
    result = CliRunner().invoke(inspect_command, [str(curated), "--html", str(page), "--workers", "1",
                                                  "--low-confidence", "0.3"])
    assert result.exit_code == 0, result.output
    assert "<b id='threshold-shown'>0.30</b>" in page.read_text()

    def view(fragment: str) -> Cards:
        return render_in_chromium(chromium, page, fragment, tmp_path / f"profile-{len(fragment)}-{hash(fragment)}")

    everything = view("")
    assert sorted(everything.shown()) == ["a.mp4", "broken <b>.mp4", "c #1.mp4", "magenta.mp4"]
    assert [c["data-uri"] for c in everything.cards] == sorted(c["data-uri"] for c in everything.cards)
    assert everything.text["shown-count"] == "4 of 4 shown"
    assert everything.low() == {"magenta.mp4"} and everything.text["threshold-shown"] == "0.30"

    # Filters: each changes what is shown (hidden cards stay in the page, with the hidden attribute).
    assert view("#label=archery").shown() == ["a.mp4"]  # the top-1 label only
    assert sorted(view("#label=ARCH&any=1").shown()) == ["a.mp4", "c #1.mp4", "magenta.mp4"]  # any of top-k
    error = view("#status=error")
    assert error.shown() == ["broken <b>.mp4"] and error.text["shown-count"] == "1 of 4 shown"
    assert sorted(view("#status=ok&min=0.4").shown()) == ["a.mp4", "c #1.mp4"]
    assert view("#max=0.2").shown() == ["magenta.mp4"]  # failed videos have no score to compare
    assert view("#low=1").shown() == ["magenta.mp4"]
    # The threshold can be changed in the page: c #1 (0.5) becomes low too.
    raised = view("#threshold=0.6&low=1")
    assert sorted(raised.shown()) == ["c #1.mp4", "magenta.mp4"] and raised.low() == {"c #1.mp4", "magenta.mp4"}
    assert raised.text["threshold-shown"] == "0.60"
    # Sorting reorders the cards; the failed video (no score) goes last either way.
    assert view("#sort=score").shown() == ["a.mp4", "c #1.mp4", "magenta.mp4", "broken <b>.mp4"]
    assert view("#sort=score-asc").shown() == ["magenta.mp4", "c #1.mp4", "a.mp4", "broken <b>.mp4"]
    assert view("#sort=label").shown() == ["c #1.mp4", "a.mp4", "magenta.mp4", "broken <b>.mp4"]
    assert view("#sort=score&label=a&any=1&status=ok").shown() == ["a.mp4", "c #1.mp4", "magenta.mp4"]


def magenta_runs(png: Path) -> list[tuple[int, int, int]]:
    """(row, first column, width) of each horizontal run of magenta in the screenshot's best row."""
    image = np.asarray(Image.open(png).convert("RGB")).astype(int)
    r, g, b = image[..., 0], image[..., 1], image[..., 2]
    mask = (r > 200) & (g < 90) & (b > 200)
    if not mask.any():
        return []
    row = int(np.argmax(mask.sum(axis=1)))
    cols = np.flatnonzero(mask[row])
    runs = np.split(cols, np.flatnonzero(np.diff(cols) > 1) + 1)
    return [(row, int(run[0]), len(run)) for run in runs]


def test_page_shows_thumbnails_in_chromium(labelled, chromium, tmp_path):
    page = tmp_path / "report.html"
    write_html(str(labelled), str(page))
    shot = tmp_path / "shot.png"
    args = ["--hide-scrollbars", "--force-device-scale-factor=1", "--window-size=1280,2000"]
    browser(chromium, tmp_path / "profile", *args, f"--screenshot={shot}", page.as_uri())
    assert shot.exists()

    # The magenta video's strip: FRAMES thumbnails side by side, each THUMB pixels wide.
    runs = magenta_runs(shot)
    assert len(runs) == FRAMES, runs
    assert all(abs(width - THUMB) <= 2 for _, _, width in runs), runs
    starts = [start for _, start, _ in runs]
    assert all(THUMB <= b - a <= THUMB + 8 for a, b in zip(starts, starts[1:])), runs

    # The same page without its thumbnails has no magenta at all: the pixels come from the images.
    bare = tmp_path / "bare.html"
    bare.write_text(re.sub(r"<img class='thumb'[^>]*>", "", page.read_text()))
    bare_shot = tmp_path / "bare.png"
    browser(chromium, tmp_path / "profile-bare", *args, f"--screenshot={bare_shot}", bare.as_uri())
    assert magenta_runs(bare_shot) == []
