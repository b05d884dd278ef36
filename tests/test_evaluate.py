"""`stam-label evaluate`: accuracy through the real pipeline, with a checkpoint whose answers are known.

The test checkpoint is the tiny model with its head replaced: zero weights and a bias that
puts FAVOURED first and SECOND second for every input, so each video's top-1 and top-5 are
known in advance and the metrics can be asserted exactly.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

import stam_core
from jobs.cli.evaluate import evaluate_command
from jobs.tools.evaluate import EvaluationError, evaluate, read_manifest
from jobs.tools.samples import make_sample_video

FAVOURED, SECOND, OTHER = "juggling balls", "playing guitar", "zumba"


@pytest.fixture(scope="module")
def biased_weights(tiny_weights, tmp_path_factory) -> Path:
    checkpoint = torch.load(tiny_weights, map_location="cpu", weights_only=True)
    state = checkpoint["model"]
    classes = list(stam_core.KINETICS400_CLASSES)
    state["head.weight"].zero_()
    state["head.bias"].zero_()
    state["head.bias"][classes.index(FAVOURED)] = 20.0  # exact in bf16 too: the order cannot flip
    state["head.bias"][classes.index(SECOND)] = 10.0
    path = tmp_path_factory.mktemp("biased") / "stam_tiny_biased.pth"
    torch.save(checkpoint, path)
    return path


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("eval-videos")
    for i, name in enumerate(("x1.mp4", "x2.mp4", "y1.mp4", "z1.mp4")):
        make_sample_video(root / name, seed=i, seconds=1.0, fps=8, size=(96, 64))
    (root / "broken.mp4").write_text("not a video")
    return root


def run_options(weights, address) -> dict:
    return {"weights": str(weights), "address": address, "batch_size": 4, "decode_timeout": 60}


def check_numbers(report: dict, failed_names: set[str]) -> None:
    # 6 videos: x1, x2 (FAVOURED), y1 (SECOND), z1 (OTHER) labelled; broken (OTHER), missing (FAVOURED) fail.
    assert report["count"] == 6 and report["evaluated"] == 4 and report["num_failed"] == 2
    assert report["top1"] == 50.0 and report["top5"] == 75.0
    assert report["top1_all"] == pytest.approx(100 * 2 / 6, abs=1e-3)
    assert report["top5_all"] == 50.0
    assert report["mean_class_accuracy"] == pytest.approx(100 / 3, abs=1e-3)
    per = report["per_class"]
    assert set(per) == {FAVOURED, SECOND, OTHER}
    assert (per[FAVOURED]["count"], per[FAVOURED]["evaluated"], per[FAVOURED]["failed"]) == (3, 2, 1)
    assert (per[FAVOURED]["top1"], per[FAVOURED]["top5"]) == (100.0, 100.0)
    assert (per[SECOND]["top1"], per[SECOND]["top5"]) == (0.0, 100.0)
    assert (per[OTHER]["evaluated"], per[OTHER]["failed"], per[OTHER]["top1"], per[OTHER]["top5"]) == (1, 1, 0.0, 0.0)
    assert report["confused_pairs"] == [{"true": SECOND, "predicted": FAVOURED, "count": 1},
                                        {"true": OTHER, "predicted": FAVOURED, "count": 1}]
    failed = {Path(f["video_uri"]).name: f for f in report["failed"]}
    assert set(failed) == failed_names
    kinds = sorted(f["error_kind"] for f in failed.values())
    assert kinds == ["format_error", "not_found"]
    assert all(f["error"] for f in failed.values())


def test_video_uri_manifest(videos, biased_weights, ray_head, tmp_path):
    manifest = videos / "eval.csv"
    manifest.write_text("video_uri,label\n"
                        f"x1.mp4,{FAVOURED}\nx2.mp4,{FAVOURED}\ny1.mp4,{SECOND}\nz1.mp4,{OTHER}\n"
                        f"broken.mp4,{OTHER}\n{videos / 'missing.mp4'},{FAVOURED}\n")
    out = tmp_path / "labels"
    result = evaluate(str(manifest), run_options(biased_weights, ray_head), output_uri=str(out))
    report = result.as_dict()
    check_numbers(report, {"broken.mp4", "missing.mp4"})
    assert report["run"]["weights_sha256"] == stam_core.file_sha256(biased_weights)
    assert report["run"]["labelled"] == 6 and report["run"]["skipped"] == 0
    assert (out / "_runs").is_dir()  # --output keeps the label rows

    # Reusing --output: what is labelled is not labelled again, and the numbers are the same.
    again = evaluate(str(manifest), run_options(biased_weights, ray_head), output_uri=str(out)).as_dict()
    # The missing video is retried (not_found may be transient); the broken one is final.
    assert (again["run"]["skipped"], again["run"]["labelled"]) == (5, 1)
    check_numbers(again, {"broken.mp4", "missing.mp4"})


def test_kinetics_manifest_through_the_cli(videos, biased_weights, ray_head, tmp_path):
    root = tmp_path / "kinetics"
    root.mkdir()
    rows = [(FAVOURED, "x1", "x1.mp4"), (FAVOURED, "x2", "x2.mp4"), (SECOND, "y1", "y1.mp4"), (OTHER, "z1", "z1.mp4"),
            (OTHER, "broken", "broken.mp4"), (FAVOURED, "missing", None)]
    lines = ["label,youtube_id,time_start,time_end,split"]
    for label, yid, source in rows:
        if source:
            shutil.copy(videos / source, root / f"{yid}_000000_000001.mp4")
        lines.append(f'"{label}",{yid},0,1,val')
    manifest = tmp_path / "validate.csv"
    manifest.write_text("\n".join(lines) + "\n")
    report_path = tmp_path / "report.json"
    result = CliRunner().invoke(evaluate_command, [
        str(manifest), "--weights", str(biased_weights), "--video-root", str(root), "--json", str(report_path),
        "--address", ray_head, "--batch-size", "4", "--decode-timeout", "60"])
    assert result.exit_code == 0, result.output
    assert "top-1: 50.00%" in result.output and "top-5: 75.00%" in result.output
    assert f"{SECOND} -> {FAVOURED}" in result.output and "missing_000000_000001.mp4" in result.output
    check_numbers(json.loads(report_path.read_text()), {"broken_000000_000001.mp4", "missing_000000_000001.mp4"})


def test_manifest_errors(tmp_path):
    classes = stam_core.KINETICS400_CLASSES
    unknown = tmp_path / "unknown.csv"
    unknown.write_text("video_uri,label\na.mp4,abseiling\nb.mp4,flying a spaceship\nc.mp4,Abseiling\n")
    with pytest.raises(EvaluationError, match=r"2 videos have labels .*'flying a spaceship'.*'Abseiling'"):
        read_manifest(str(unknown), classes)

    kinetics = tmp_path / "k.csv"
    kinetics.write_text("label,youtube_id,time_start,time_end,split\nabseiling,abc,10,20,val\n")
    with pytest.raises(EvaluationError, match="--video-root"):
        read_manifest(str(kinetics), classes)
    [example] = read_manifest(str(kinetics), classes, video_root="s3://bucket/val")
    assert example.uri == "s3://bucket/val/abc_000010_000020.mp4" and example.label == "abseiling"

    other = tmp_path / "o.csv"
    other.write_text("path,class\na.mp4,abseiling\n")
    with pytest.raises(EvaluationError, match="expected a header"):
        read_manifest(str(other), classes)

    twice = tmp_path / "t.csv"
    twice.write_text("video_uri,label\na.mp4,abseiling\na.mp4,archery\n")
    with pytest.raises(EvaluationError, match="listed twice"):
        read_manifest(str(twice), classes)

    # Through the CLI: a clear one-line error before any work (no Ray, no weights loaded).
    result = CliRunner().invoke(evaluate_command, [str(unknown), "--weights", str(tmp_path / "none.pth")])
    assert result.exit_code == 3 and "flying a spaceship" in result.output
    result = CliRunner().invoke(evaluate_command, [str(tmp_path / "absent.csv"), "--weights", "w.pth"])
    assert result.exit_code == 3 and "absent.csv: manifest does not exist" in result.output
