"""Every column of a label row by its role: the one list that the batch schemas, the
video-level row and the skip test take their column names from. jobs/schema.py gives the
types; tests/test_columns.py checks that every output column has exactly one role."""
from __future__ import annotations

KEY = ("video_uri", "mode", "segment_index")  # one current row per key
SEGMENT = ("segment_start_s", "segment_end_s")  # a window's bounds
OUTCOME = ("status", "error", "error_kind")
MODEL_OUTPUT = ("labels", "scores", "class_ids", "label", "score")
CLIP_FACTS = ("duration_s", "frame_indices", "frame_timestamps", "decode_cpu_ms", "warnings")  # per decoded clip
STREAM_FACTS = ("fps", "width", "height", "codec", "decoder", "resize")  # the same for every window of a video
SOURCE = ("source_size", "source_version")  # the file as listed: what makes a changed file new work
IDENTITY = ("model", "weights_sha256", "precision", "run_id")  # who labelled which file
WRITTEN = ("labelled_at",)

ROLES = {"key": KEY, "segment": SEGMENT, "outcome": OUTCOME, "model output": MODEL_OUTPUT,
         "clip fact": CLIP_FACTS, "stream fact": STREAM_FACTS, "source": SOURCE, "identity": IDENTITY,
         "written": WRITTEN}

DECODER_FACTS = CLIP_FACTS + STREAM_FACTS  # what the decode stage reports beside the frames
SKIP_KEY = ("video_uri", "source_version")  # a labelled video is done for this version of its file
