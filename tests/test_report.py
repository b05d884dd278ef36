"""`stam-label inspect`: the text summary, the PNG chart, and the HTML page in a real headless Chromium."""
from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from conftest import job_config as _config
from click.testing import CliRunner
from PIL import Image

from jobs.demo import make_sample_video
from jobs.pipeline import run_job
from jobs.report import (BAR_COLOUR, SUMMARY_COLUMNS, THUMB, inspect_command, load, render_html, write_html,
                         write_plot)
from jobs.schema import output_schema
from jobs.table import LabelTable

CHROMIUM = "/usr/bin/chromium"
FRAMES = 8  # the tiny model samples 8 frames


def make_magenta_video(path: Path, seconds: float = 1.0, fps: int = 8, size=(96, 64)) -> Path:
    """A clip that is magenta everywhere but a small moving white square: easy to find in a screenshot."""
    import av

    width, height = size
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for i in range(int(seconds * fps)):
            img = np.empty((height, width, 3), np.uint8)
            img[:] = (255, 0, 255)
            img[4:12, 4 + 2 * i: 12 + 2 * i] = 255
            for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


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


@pytest.fixture(scope="module")
def windowed(tmp_path_factory, tiny_weights, ray_head) -> Path:
    root = tmp_path_factory.mktemp("report-windows")
    (root / "videos").mkdir()
    make_sample_video(root / "videos" / "five.mp4", seed=4, seconds=5.0, fps=4, size=(96, 64))
    out = root / "labels"
    run_job(_config(tiny_weights, root / "videos", out, ray_head, window_s=2.0))
    return out


def current_rows(output: Path) -> dict[str, dict]:
    return {Path(r["video_uri"]).name: r for r in LabelTable(str(output)).read_current().to_pylist()}


def test_text_summary(labelled):
    rows = current_rows(labelled)
    result = CliRunner().invoke(inspect_command, [str(labelled)])
    assert result.exit_code == 0, result.output
    out = result.output
    assert "3 videos, 3 rows, 1 runs" in out and "status: 2 ok, 1 error" in out
    assert "error kinds:" in out and "1  format_error: e.g." in out and "broken <b>.mp4" in out
    for name in ("a.mp4", "magenta.mp4"):
        assert re.search(rf"^\s+\d+\s+{re.escape(rows[name]['labels'][0])}$", out, re.M), out

    missing = CliRunner().invoke(inspect_command, [str(labelled.parent / "nothing")])
    assert missing.exit_code == 1 and "no committed label rows" in missing.output


def test_summary_of_an_s3_output(labelled, local_s3):
    local_s3.create_bucket("inspect")
    for path in labelled.rglob("*"):
        if path.is_file():
            local_s3.upload(path, f"s3://inspect/labels/{path.relative_to(labelled)}")
    _, remote = load("s3://inspect/labels", SUMMARY_COLUMNS)
    _, local = load(str(labelled), SUMMARY_COLUMNS)
    assert (remote.videos, remote.status, remote.labels, remote.error_kinds, len(remote.runs)) == \
        (local.videos, local.status, local.labels, local.error_kinds, 1)


def test_plot_png_has_one_bar_per_label(tmp_path):
    from collections import Counter

    counts = Counter({"abseiling": 5, "archery": 3, "zumba": 1})
    path = tmp_path / "labels.png"
    write_plot(counts, str(path))
    image = np.asarray(Image.open(path).convert("RGB"))
    bar = np.all(image == BAR_COLOUR, axis=-1)
    rows = np.flatnonzero(bar.any(axis=1))
    bands = np.split(rows, np.flatnonzero(np.diff(rows) > 1) + 1)
    assert len(bands) == 3  # three bars, top to bottom in frequency order
    lengths = [bar[band[0]].sum() for band in bands]
    assert lengths[0] > lengths[1] > lengths[2]
    assert lengths[1] / lengths[0] == pytest.approx(3 / 5, abs=0.02)


def test_html_page(labelled, tmp_path):
    rows = current_rows(labelled)
    page_path = tmp_path / "report.html"
    result = CliRunner().invoke(inspect_command, [str(labelled), "--html", str(page_path),
                                                  "--plot", str(tmp_path / "l.png")])
    assert result.exit_code == 0, result.output
    page = page_path.read_text()
    assert page.count("<img class='thumb' src='data:image/jpeg;base64,") == 2 * FRAMES
    assert "frame mismatch" not in page and "thumbnails unavailable" not in page  # re-read == labelled frames
    offline = page.replace('xmlns="http://www.w3.org/2000/svg"', "")  # a namespace name, never fetched
    assert "http://" not in offline and "https://" not in offline  # self-contained: nothing to load
    labels = {rows[n]["labels"][0] for n in ("a.mp4", "magenta.mp4")}
    assert page.count("<rect ") == len(labels)  # one bar per distinct top-1 label
    for name in ("a.mp4", "magenta.mp4"):
        for label in rows[name]["labels"]:
            assert label.replace("'", "&#x27;") in page
    assert "Failed videos (1)" in page and "format_error" in page
    assert "broken &lt;b&gt;.mp4" in page and "<b>" not in page
    assert (tmp_path / "l.png").stat().st_size > 0

    capped = render_html(*load(str(labelled)), max_videos=1)
    assert capped.count("<img class='thumb'") == FRAMES
    assert "Showing the first 1 of 2 labelled videos" in capped and "1 left out" in capped


def test_html_windowed_strips(windowed, tmp_path):
    page_path = tmp_path / "w.html"
    summary = write_html(str(windowed), str(page_path))
    assert (summary.videos, summary.rows, summary.windows) == (1, 4, {"ok": 3})
    page = page_path.read_text()
    # One strip per window (0-2, 2-4, 4-5 s), each re-read with the window's bounds and matching.
    assert page.count("<img class='thumb'") == 3 * FRAMES
    assert "frame mismatch" not in page
    assert "window 0: 0.0–2.0 s" in page and "window 2: 4.0–5.0 s" in page and "3 windows" in page


def test_html_says_when_frames_differ(labelled, tmp_path):
    """A row whose frame_indices no longer match what decoding gives is flagged on the page."""
    table = LabelTable(str(labelled)).read_all()
    rows = table.to_pylist()
    for row in rows:
        if row["video_uri"].endswith("magenta.mp4"):
            row["frame_indices"] = [i + 1 for i in row["frame_indices"]]
    tampered = tmp_path / "tampered"
    LabelTable(str(tampered)).write_part(rows[0]["run_id"], 0, pa.Table.from_pylist(rows, schema=output_schema()))
    page = render_html(*load(str(tampered)))
    assert page.count("frame mismatch") == 1
    assert re.search(r"magenta\.mp4.*?frame mismatch", page, re.S)


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


@pytest.mark.skipif(not os.path.exists(CHROMIUM), reason=f"{CHROMIUM} is not installed (apt-get install chromium)")
def test_page_shows_thumbnails_in_chromium(labelled, tmp_path):
    page = tmp_path / "report.html"
    write_html(str(labelled), str(page))
    shot = tmp_path / "shot.png"
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           "--hide-scrollbars", "--force-device-scale-factor=1", f"--user-data-dir={tmp_path / 'profile'}",
           f"--screenshot={shot}", "--window-size=1280,2000", page.as_uri()]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and shot.exists(), done.stderr[-2000:]

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
    subprocess.run(cmd[:-3] + [f"--screenshot={bare_shot}", "--window-size=1280,2000", bare.as_uri()],
                   capture_output=True, timeout=120, check=True)
    assert magenta_runs(bare_shot) == []
