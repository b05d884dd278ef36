"""The stage bodies (jobs/stages/) without Ray: Arrow in, Arrow out, called directly."""
import itertools

import numpy as np
import pyarrow as pa
import pytest

from jobs.schema import output_schema
from jobs.segments import VIDEO_LEVEL
from jobs.stages import decode, windows
from jobs.stages.decode import decode_videos
from jobs.stages.label import Labeler, LabelParams
from jobs.stages.records import WORK_ITEM, decoded_schema, labelled_schema, to_work_items
from jobs.stages.windows import expand_windows
from jobs.tools.samples import make_sample_video

NUM_FRAMES = 8  # stam_tiny's clip length


@pytest.fixture(autouse=True)
def _keep_priority(monkeypatch):
    # The bodies renice their process (for Ray workers); the test process keeps its own.
    monkeypatch.setattr(decode, "lower_priority", lambda: None)
    monkeypatch.setattr(windows, "lower_priority", lambda: None)


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    return make_sample_video(tmp_path_factory.mktemp("unit") / "five.mp4", seed=1, seconds=5.0, fps=4, size=(96, 64))


def _items(*uris, error_kind=None):
    return to_work_items(pa.table({"video_uri": list(uris), "source_size": [None] * len(uris),
                                   "source_version": [None] * len(uris), "error_kind": [error_kind] * len(uris),
                                   "error": [None if error_kind is None else "listed badly"] * len(uris)}))


def test_windows_expand_a_video_and_keep_listing_errors_as_one_video_level_row(video):
    out = expand_windows(pa.concat_tables([_items(str(video)), _items("gone.mp4", error_kind="list_error")]),
                         window=2.0, stride=None, timeout=30, max_pixels=None)
    assert out.schema == WORK_ITEM
    rows = out.to_pylist()
    assert [(r["segment_index"], r["start_s"], r["num_segments"]) for r in rows[:-1]] == [
        (0, 0.0, 3), (1, 2.0, 3), (2, 4.0, 3)]
    assert rows[-1]["segment_index"] == VIDEO_LEVEL and rows[-1]["error_kind"] == "list_error"


def test_windows_over_the_limit_become_one_too_long_row(video):
    rows = expand_windows(_items(str(video)), window=1.0, stride=None, timeout=30, max_pixels=None,
                          max_windows=2).to_pylist()
    assert len(rows) == 1 and rows[0]["error_kind"] == "too_long" and rows[0]["segment_index"] == VIDEO_LEVEL


def test_decode_gives_frames_for_good_rows_and_typed_errors_for_bad(video, tmp_path):
    out = decode_videos(_items(str(video), str(tmp_path / "missing.mp4")), num_frames=NUM_FRAMES, timeout=30,
                        max_pixels=None)
    assert out.schema == decoded_schema(NUM_FRAMES)
    rows = out.select(["ok", "error_kind", "decode_node", "width", "height"]).to_pylist()
    assert rows[0] == {"ok": True, "error_kind": None, "decode_node": None, "width": 96, "height": 64}
    assert rows[1]["ok"] is False and rows[1]["error_kind"] == "not_found"
    assert out["frames"].null_count == 1


def test_label_turns_decoded_clips_into_output_rows(video, tmp_path, tiny_weights):
    decoded = decode_videos(_items(str(video), str(tmp_path / "missing.mp4")), num_frames=NUM_FRAMES, timeout=30,
                            max_pixels=None)
    names = tuple(f"class {i}" for i in range(400))
    params = LabelParams(weights=str(tiny_weights), sha256=None, precision="fp32", top_k=3, class_names=names,
                         model_name="stam_tiny", run_id="r1", mode="video", threads=1)
    out = Labeler(params)(decoded)
    assert out.schema == labelled_schema(output_schema())
    good, bad = out.to_pylist()
    assert good["status"] == "ok" and len(good["labels"]) == 3 and good["labels"][0] in names
    assert good["scores"] == sorted(good["scores"], reverse=True)
    assert [names[i] for i in good["class_ids"]] == good["labels"]
    assert good["segment_start_s"] == 0.0 and good["run_id"] == "r1" and good["model_node"] is None
    assert bad["status"] == "error" and bad["error_kind"] == "not_found" and bad["labels"] is None
    assert np.isfinite(good["model_s"])


@pytest.mark.parametrize("window_s", [None, 2.0])
def test_the_stage_list_chains_schemas_and_says_how_each_stage_is_placed(window_s):
    from jobs.config import JobConfig
    from jobs.placement import CPU_TASK, LIGHT_TASK, MODEL_ACTOR
    from jobs.stage_list import stages
    from stam_core.model.checkpoint import CheckpointInfo

    config = JobConfig(input_uri="in", output_uri="out", weights="w", window_s=window_s, embeddings=True)
    info = CheckpointInfo("stam_tiny", NUM_FRAMES, 400, 96, "0" * 64, "w")
    label = LabelParams.from_config(config, sha256=None, class_names=["c"] * 400, model_name="m", run_id="r",
                                    mode="video")
    chain = stages(config, info, None, label)
    names = ["work items", *(["windows"] if window_s else []), "decode", "label"]
    assert [s.name for s in chain] == names
    assert [s.kind for s in chain] == [LIGHT_TASK, *([CPU_TASK] if window_s else []), CPU_TASK, MODEL_ACTOR]
    for before, after in itertools.pairwise(chain):
        assert after.input_schema == before.output_schema, after.name
    assert chain[-1].output_schema == labelled_schema(output_schema(96))
    assert chain[-1].params["params"] is label
