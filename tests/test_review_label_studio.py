"""The review round trip against a real Label Studio (started here from .venv-review, made by
scripts/label-studio-venv.sh) and a real labelling run: label videos, queue the uncertain ones
into a Label Studio project, annotate them through the SDK as an annotator would, export,
import-reviews, relabel with --relabel, and check the human labels survived.

Without .venv-review the test is skipped, except under CI=1, where it fails (.ci/run makes it).
"""
from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest
from conftest import VENV_BIN, wait_for

from jobs.table import LabelTable
from jobs.tools.samples import make_sample_video
from stam_core import KINETICS400_CLASSES

REPO = Path(__file__).parents[1]
LS_VENV = REPO / ".venv-review"
ANNOTATOR = Path(__file__).parent / "support" / "label_studio_annotator.py"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def label_studio(tmp_path_factory):
    """(URL, API key) of a Label Studio on 127.0.0.1 with a SQLite database in a temp dir."""
    binary = LS_VENV / "bin" / "label-studio"
    if not binary.exists():
        message = f"Label Studio is not installed in {LS_VENV}: run scripts/label-studio-venv.sh"
        if os.environ.get("CI") == "1":
            pytest.fail(message + " (CI=1: the Label Studio round trip is required)")
        pytest.skip(message)
    data = tmp_path_factory.mktemp("label-studio")
    template = LS_VENV / "template.sqlite3"  # migrated once by scripts/label-studio-venv.sh
    if template.exists():
        shutil.copy(template, data / "label_studio.sqlite3")
    port, token = free_port(), secrets.token_hex(20)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LABEL_STUDIO_", "PYTHONPATH"))}
    env.update(LATEST_VERSION_CHECK="false", LABEL_STUDIO_USER_TOKEN=token, LABEL_STUDIO_PASSWORD=secrets.token_hex(8))
    started = time.monotonic()
    with open(data / "label-studio.log", "w") as log:  # the child keeps its own copy of the descriptor
        server = subprocess.Popen(
            [str(binary), "start", "--no-browser", "--port", str(port), "--internal-host", "127.0.0.1",
             "--data-dir", str(data), "--database", str(data / "label_studio.sqlite3"), "--username",
             "lead@example.com", "--enable-legacy-api-token", "--log-level", "WARNING"],
            env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, cwd=data)
    url = f"http://127.0.0.1:{port}"

    def ready():
        if server.poll() is not None:
            raise AssertionError(f"label-studio exited: {(data / 'label-studio.log').read_text()[-3000:]}")
        request = urllib.request.Request(url + "/api/projects", headers={"Authorization": f"Token {token}"})
        try:
            with urllib.request.urlopen(request, timeout=5) as response:
                return response.status == 200
        except OSError:
            return False

    try:
        wait_for(ready, 300, "Label Studio to answer")
        print(f"Label Studio ready in {time.monotonic() - started:.1f} s")
        yield url, token
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)


def personal_access_token(url: str, legacy_token: str) -> str:
    """A personal access token (a JWT, Label Studio's default kind of key) for the same user."""
    request = urllib.request.Request(url + "/api/token/", data=b"{}", method="POST",
                                     headers={"Authorization": f"Token {legacy_token}",
                                              "Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.loads(response.read())["token"]


def annotator(url: str, token: str, *args) -> str:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["LABEL_STUDIO_API_KEY"] = token
    done = subprocess.run([str(LS_VENV / "bin" / "python"), str(ANNOTATOR), url, *map(str, args)], env=env,
                          check=False, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout.strip()


def stam_label(*args, env: dict | None = None) -> str:
    done = subprocess.run([str(VENV_BIN / "stam-label"), *map(str, args)], env={**os.environ, **(env or {})},
                          check=False, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, f"stam-label {args[0]} exited {done.returncode}:\n{done.stdout[-3000:]}" \
                                 f"\n{done.stderr[-3000:]}"
    return done.stdout + done.stderr


def test_review_round_trip_through_label_studio(label_studio, tiny_weights, ray_head, tmp_path):
    url, token = label_studio
    videos, out = tmp_path / "videos", tmp_path / "labels"
    videos.mkdir()
    for i in range(3):
        make_sample_video(videos / f"v{i}.mp4", seed=10 + i, seconds=1.0, fps=8, size=(96, 64))
    run = ["--weights", tiny_weights, "--address", ray_head, "--batch-size", "4", "--progress-interval", "0"]
    stam_label("run", videos, out, *run)
    table = LabelTable(str(out))
    labelled_version = table.snapshot().version()
    first = {r["video_uri"]: r for r in table.read_current().to_pylist()}
    assert len(first) == 3 and all(r["status"] == "ok" for r in first.values())

    # The queue goes to a project made with the labelling config `review` writes beside it.
    queue = tmp_path / "queue.json"
    stam_label("review", out, queue, "--limit", 3)
    project = annotator(url, token, "create-project", "stam-label review", tmp_path / "queue.label-config.xml")
    # The push uses a personal access token (exchanged for an access token); the annotator a legacy one.
    key = personal_access_token(url, token)
    pushed = stam_label("review", out, queue, "--limit", 3, "--to-label-studio", url, "--project", project,
                        env={"LABEL_STUDIO_API_KEY": key})
    assert f"3 tasks imported into project {project}" in pushed and key not in pushed

    # The annotator corrects one video, confirms another, leaves the third for later.
    uris = sorted(first)
    corrected = next(c for c in KINETICS400_CLASSES if c not in first[uris[0]]["labels"])
    confirmed = first[uris[1]]["label"]
    assert annotator(url, token, "annotate", project, json.dumps({uris[0]: corrected, uris[1]: confirmed})) == "2"
    export = tmp_path / "export.json"
    annotator(url, token, "export", project, export)

    # A bad answer in the export: nothing is imported, the table keeps its version.
    tasks = json.loads(export.read_text())
    bad = json.loads(json.dumps(tasks))
    for task in bad:
        for a in task["annotations"]:
            a["result"][0]["value"]["choices"] = ["not a kinetics class"]
    (tmp_path / "bad.json").write_text(json.dumps(bad))
    failed = subprocess.run([str(VENV_BIN / "stam-label"), "import-reviews", str(out), str(tmp_path / "bad.json")],
                            check=False, capture_output=True, text=True, timeout=300)
    assert failed.returncode == 1 and "'not a kinetics class' is not a class name" in failed.stderr
    assert table.snapshot().version() == labelled_version

    imported = stam_label("import-reviews", out, export)
    assert "imported 2 human labels" in imported and "1 task without an answer" in imported
    reviewed = {r["video_uri"]: r for r in table.read_current().to_pylist()}
    assert reviewed[uris[0]]["label"] == corrected and reviewed[uris[0]]["label_source"] == "human"
    assert reviewed[uris[0]]["reviewed_by"].startswith("label-studio user")
    assert reviewed[uris[1]]["human_label"] == confirmed and reviewed[uris[2]]["human_label"] is None

    # Relabelling everything (top-3 this time) keeps the human columns of the videos it relabels.
    stam_label("run", videos, out, *run, "--relabel", "--top-k", 3)
    after = {r["video_uri"]: r for r in table.read_current().to_pylist()}
    for uri in uris:
        assert after[uri]["run_id"] != first[uri]["run_id"] and len(after[uri]["labels"]) == 3
    for column in ("human_label", "reviewed_by", "reviewed_at"):
        assert [after[u][column] for u in uris] == [reviewed[u][column] for u in uris]
    assert after[uris[0]]["label"] == corrected and after[uris[0]]["labels"][0] != corrected
    assert [after[u]["label_source"] for u in uris] == ["human", "human", "model"]

    changes = stam_label("diff", out, "--from", labelled_version)
    assert "top-1 changed: 1 of 3 videos" in changes and f"-> {corrected} [human]" in changes
    summary = stam_label("inspect", out)
    assert "reviewed: 2 videos have a human label (1 differ from the model's top-1)" in summary
