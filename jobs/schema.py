"""The output schema: the one definition of a label row (documented in the README)."""
from __future__ import annotations

import pyarrow as pa


BASE_FIELDS = [
    pa.field("video_uri", pa.string(), nullable=False),
    # "video" (whole-video clips) or "window=W,stride=S"; part of the skip key.
    pa.field("mode", pa.string(), nullable=False),
    pa.field("segment_index", pa.int32(), nullable=False),  # 0 for whole-video rows
    pa.field("segment_start_s", pa.float64()),
    pa.field("segment_end_s", pa.float64()),
    pa.field("status", pa.string(), nullable=False),  # "ok" | "error"
    pa.field("error", pa.string()),  # message naming the input and the reason; null when ok
    pa.field("error_kind", pa.string()),  # not_found | read_error | format_error | timeout | ...
    pa.field("labels", pa.list_(pa.string())),  # top-k class names, best first
    pa.field("scores", pa.list_(pa.float32())),  # their softmax probabilities, descending
    pa.field("class_ids", pa.list_(pa.int32())),
    pa.field("duration_s", pa.float64()),
    pa.field("fps", pa.float64()),
    pa.field("width", pa.int32()),
    pa.field("height", pa.int32()),
    pa.field("codec", pa.string()),
    pa.field("frame_indices", pa.list_(pa.int32())),
    pa.field("frame_timestamps", pa.list_(pa.float64())),
    pa.field("decoder", pa.string()),
    pa.field("source_size", pa.int64()),
    pa.field("source_version", pa.string()),  # "size:mtime_ns" at listing time
    pa.field("model", pa.string()),
    pa.field("weights_sha256", pa.string()),
    pa.field("precision", pa.string()),
    pa.field("run_id", pa.string(), nullable=False),
    pa.field("labelled_at", pa.timestamp("us", tz="UTC"), nullable=False),
]

PROBS_FIELD = pa.field("probs", pa.list_(pa.float32()))

# Error kinds worth another try on the next run; others are final for that source version.
RETRYABLE_ERROR_KINDS = frozenset({"read_error", "timeout", "decoder_crash", "lost", "not_found"})


def output_schema(embedding_dim: int = 0, probs: bool = False) -> pa.Schema:
    """The row schema; ``embedding_dim`` > 0 adds the embedding column (768 for STAM ViT-B)."""
    fields = list(BASE_FIELDS)
    if embedding_dim:
        fields.append(pa.field("embedding", pa.list_(pa.float32(), embedding_dim)))
    if probs:
        fields.append(PROBS_FIELD)
    return pa.schema(fields)
