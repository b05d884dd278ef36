"""The output schema: the one definition of a label row (documented in the README), and the
plain Arrow types its rows have when read back (``plain``)."""
from __future__ import annotations

import functools

import pyarrow as pa
import pyarrow.compute as pc

from jobs.segments import video_row_index

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
    pa.field("label", pa.string()),  # labels[0], flat for SQL
    pa.field("score", pa.float32()),  # scores[0]
    pa.field("duration_s", pa.float64()),
    pa.field("fps", pa.float64()),
    pa.field("width", pa.int32()),
    pa.field("height", pa.int32()),
    pa.field("codec", pa.string()),
    pa.field("frame_indices", pa.list_(pa.int32())),
    pa.field("frame_timestamps", pa.list_(pa.float64())),
    pa.field("decoder", pa.string()),
    pa.field("resize", pa.string()),  # "exact" (the official PIL transform) or "fast" (swscale)
    pa.field("decode_cpu_ms", pa.float32()),  # CPU time the decode worker spent on this clip
    # What the decoder survived (e.g. "64 undecodable packets between 2.4 s and 7.5 s"); null when clean.
    pa.field("warnings", pa.list_(pa.string())),
    pa.field("source_size", pa.int64()),
    pa.field("source_version", pa.string()),  # "size:mtime_ns" at listing time
    pa.field("model", pa.string()),
    pa.field("weights_sha256", pa.string()),
    pa.field("precision", pa.string()),
    pa.field("run_id", pa.string(), nullable=False),
    pa.field("labelled_at", pa.timestamp("us", tz="UTC"), nullable=False),
]

PROBS_FIELD = pa.field("probs", pa.list_(pa.float32()))

# The human review (`stam-label import-reviews`): set on a video's own row only, kept by every
# later run of that video (keep_human_columns). The model columns (labels, scores, score) keep
# the model's answer; the flat ``label`` is the human label where there is one.
HUMAN_FIELDS = [
    pa.field("human_label", pa.string()),  # the annotator's class name; null when not reviewed
    pa.field("reviewed_by", pa.string()),  # who reviewed it (as the review tool names them)
    pa.field("reviewed_at", pa.timestamp("us", tz="UTC")),
]
HUMAN_COLUMNS = tuple(f.name for f in HUMAN_FIELDS)
LABEL_SOURCE_FIELD = pa.field("label_source", pa.string())  # "human" | "model"; null when no label

# Error kinds worth another try on the next run; others are final for that source version.
RETRYABLE_ERROR_KINDS = frozenset({"read_error", "timeout", "decoder_crash", "lost", "not_found", "incomplete",
                                   "out_of_memory", "list_error"})
# Error kinds that depend on the run's options (--max-pixels, --allow-local-paths, --max-windows): every run
# tries them again (a header read or a check), so a run with other options gets its answer.
OPTION_ERROR_KINDS = frozenset({"too_large", "not_allowed", "too_long"})


def output_schema(embedding_dim: int = 0, probs: bool = False) -> pa.Schema:
    """The row schema; ``embedding_dim`` > 0 adds the embedding column (768 for STAM ViT-B)."""
    fields = list(BASE_FIELDS)
    if embedding_dim:
        # A plain list: Delta Lake has no fixed-size list type; every row has embedding_dim values.
        fields.append(pa.field("embedding", pa.list_(pa.float32())))
    if probs:
        fields.append(PROBS_FIELD)
    return pa.schema(fields)


FLAT_FIELDS = [pa.field("label", pa.string()), pa.field("score", pa.float32()), *HUMAN_FIELDS, LABEL_SOURCE_FIELD]


def with_flat_columns(data):
    """Fill ``label``/``score``/``label_source`` (the one place they are derived).

    ``label`` is the human label where there is one, else the model's top-1 (``labels[0]``);
    ``label_source`` says which ("human"/"model"; null for a row with no label); ``score`` is
    always the model's top-1 probability. Missing human columns are added as nulls.
    A schema is returned with all these fields present; a table gets them recomputed.
    """
    if isinstance(data, pa.Schema):
        for field in FLAT_FIELDS:
            if field.name not in data.names:
                data = data.append(field)
        return data
    for field in HUMAN_FIELDS:
        if field.name not in data.column_names:
            data = data.append_column(field, pa.nulls(data.num_rows, field.type))
    model_label = _first(data["labels"], pa.string())
    human = data["human_label"].cast(pa.string())
    is_human = pc.is_valid(human)
    label = pc.if_else(is_human, human, model_label)
    source = pc.if_else(is_human, pa.scalar("human"),
                        pc.if_else(pc.is_valid(model_label), pa.scalar("model"), pa.scalar(None, pa.string())))
    score = _first(data["scores"], pa.float32()).cast(pa.float32())
    for name, values in (("label", label), ("score", score), ("label_source", source)):
        data = (data.set_column(data.schema.get_field_index(name), name, values) if name in data.column_names
                else data.append_column(name, values))
    return data


def keep_human_columns(new_rows: pa.Table, current: pa.Table | None) -> pa.Table:
    """The rows a commit is about to write, with the human review of their videos carried over.

    ``current`` holds the current rows of the same videos that carry a human label (at least
    ``video_uri`` and HUMAN_COLUMNS; only a video's own row ever has one). Each video's own row in
    ``new_rows`` (segment_index == video_row_index(mode), so a change of mode keeps it too) takes
    them by ``video_uri``; then ``label``/``label_source`` are derived again (with_flat_columns).
    """
    new_rows = with_flat_columns(new_rows)
    if current is None or current.num_rows == 0 or new_rows.num_rows == 0:
        return new_rows
    reviewed = current.filter(pc.is_valid(current["human_label"]))
    # A video's own row, by segments.video_row_index, tested once per mode present (a handful).
    own = functools.reduce(pc.or_, [
        pc.and_(pc.equal(new_rows["mode"], mode), pc.equal(new_rows["segment_index"], video_row_index(mode)))
        for mode in pc.unique(new_rows["mode"]).to_pylist()])
    # Row i of new_rows takes row at[i] of reviewed: only its own row, only a reviewed video.
    at = pc.index_in(new_rows["video_uri"], value_set=reviewed["video_uri"].combine_chunks())
    at = pc.if_else(own, at, pa.scalar(None, pa.int32()))
    for field in HUMAN_FIELDS:
        values = reviewed[field.name].cast(field.type).take(at)
        kept = pc.if_else(pc.is_valid(at), values, new_rows[field.name].cast(field.type))
        new_rows = new_rows.set_column(new_rows.schema.get_field_index(field.name), field, kept)
    return with_flat_columns(new_rows)


def _first(lists, type_: pa.DataType):
    lists = pc.if_else(pc.greater(pc.list_value_length(lists), 0), lists, pa.scalar(None, lists.type))
    return pc.list_element(lists, 0) if len(lists) and lists.null_count < len(lists) else pa.nulls(len(lists), type_)


def plain_schema(schema: pa.Schema) -> pa.Schema:
    """The table's schema with plain Arrow types (delta-rs writes string_view; readers want string)."""
    return pa.schema([f.with_type(plain_type(f.type)) for f in schema], metadata=schema.metadata)


def plain_type(type_: pa.DataType) -> pa.DataType:
    if pa.types.is_string_view(type_) or pa.types.is_large_string(type_):
        return pa.string()
    if pa.types.is_binary_view(type_) or pa.types.is_large_binary(type_):
        return pa.binary()
    if pa.types.is_list(type_) or pa.types.is_large_list(type_) or pa.types.is_list_view(type_) \
            or pa.types.is_fixed_size_list(type_):
        return pa.list_(type_.value_field.with_type(plain_type(type_.value_type)))
    return type_


def plain(table: pa.Table) -> pa.Table:
    """A table read from the data files, with plain Arrow types (see plain_type)."""
    return table.cast(plain_schema(table.schema))
