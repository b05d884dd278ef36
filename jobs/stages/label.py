"""Stage 2: the model (stateful, GPU or CPU): decoded clips -> label rows in the output schema + FACTS."""
from __future__ import annotations

import datetime as dt
import logging
import os
import time
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from jobs.schema import output_schema
from jobs.stages.records import DECODE_INFO, FACTS, labelled_schema, ok_frames
from jobs.topk import top_k
from stam_core.weights import portable_weights

log = logging.getLogger("stam_label")

# Columns the rows take from the decoded batch as they are (null where decoding failed).
PASSED_THROUGH = ("video_uri", "segment_index", "error", "error_kind", "source_size", "source_version",
                  *(name for name in DECODE_INFO.names if name not in ("ok", "decode_node")))


@dataclass(frozen=True)
class LabelParams:
    """What the model stage needs from the run: built once on the driver (``from_config``),
    small and picklable, the model actor's only constructor argument besides the try counter."""

    weights: str
    sha256: str | None
    precision: str
    top_k: int
    class_names: tuple[str, ...]
    model_name: str
    run_id: str
    mode: str
    embeddings: bool = False
    probs: bool = False
    threads: int | None = None

    @classmethod
    def from_config(cls, config, *, sha256: str | None, class_names, model_name: str, run_id: str,
                    mode: str) -> LabelParams:
        """The config's model fields plus what the driver learned (checkpoint hash, names, run)."""
        return cls(weights=portable_weights(config.weights), sha256=sha256, precision=config.precision, top_k=config.top_k,
                   class_names=tuple(class_names), model_name=model_name, run_id=run_id, mode=mode,
                   embeddings=config.embeddings, probs=config.probs, threads=config.model_threads)


class Labeler:
    """Holds one model; turns decoded batches into finished label rows (Arrow tables)."""

    def __init__(self, params: LabelParams, node: str | None = None):
        import torch

        from stam_core.model import load_model

        p = params
        if not torch.cuda.is_available():
            # Ray pins OMP threads to the actor's CPU share; on a CPU node the model should use
            # the cores it timeshares with decoding, as the sizing guide assumes.
            torch.set_num_threads(p.threads or os.cpu_count() or 1)
        device = "cuda" if torch.cuda.is_available() else "cpu"
        self.model = load_model(p.weights, device=device, precision=p.precision, sha256=p.sha256)
        self.top_k = min(p.top_k, self.model.num_classes)
        self.class_names = np.asarray(p.class_names, dtype=object)
        self.output = output_schema(self.model.embed_dim if p.embeddings else 0, p.probs)
        self.schema = labelled_schema(self.output)
        self.static = {"model": p.model_name, "weights_sha256": p.sha256, "precision": self.model.precision,
                       "run_id": p.run_id, "mode": p.mode}
        self.windowed = p.mode != "video"
        self.node = node  # the Ray node it runs on (a FACT for the driver); null outside Ray
        # Rows carry self.model.precision; the driver logs it once from the first batch.
        log.info("model %s loaded on %s, precision %s (requested %s)", p.model_name, device,
                 self.model.precision, p.precision)

    def __call__(self, batch: pa.Table) -> pa.Table:
        ok = batch["ok"].to_numpy(zero_copy_only=False)
        started = time.perf_counter()
        probs, embeds = self._predict(ok_frames(batch, self.model.num_frames))
        model_s = time.perf_counter() - started
        n = len(ok)
        top = self._top_k(probs, ok)
        columns = {name: batch[name] for name in PASSED_THROUGH}
        columns.update(top, **_segment_bounds(batch, ok))
        columns["status"] = pa.array(np.where(ok, "ok", "error"))
        columns["labelled_at"] = pa.array([dt.datetime.now(dt.timezone.utc)] * n, pa.timestamp("us", tz="UTC"))
        probs_rows = _per_ok_row(probs, ok) if self.windowed or "probs" in self.output.names else None
        if "embedding" in self.output.names:
            columns["embedding"] = _per_ok_row(embeds, ok)
        if "probs" in self.output.names:
            columns["probs"] = probs_rows
        for key, value in self.static.items():
            columns[key] = pa.array([value] * n, pa.string())
        columns.update(  # FACTS: for the driver, never written
            decode_node=batch["decode_node"], model_node=pa.array([self.node] * n, pa.string()),
            model_s=pa.array(np.full(n, model_s / max(n, 1))),  # the row's share of the batch
            num_segments=batch["num_segments"],
            window_probs=probs_rows if self.windowed else pa.nulls(n, FACTS.field("window_probs").type))
        # label/score are derived from labels/scores in one place, when the table commits the rows.
        columns.update(label=pa.nulls(n, pa.string()), score=pa.nulls(n, pa.float32()))
        return pa.table([columns[f.name].cast(f.type) for f in self.schema], schema=self.schema)

    def _predict(self, frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Probabilities and embeddings of the decoded clips (float32, on the host)."""
        if not len(frames):
            return np.zeros((0, self.model.num_classes), np.float32), np.zeros((0, self.model.embed_dim), np.float32)
        probs, embeds = self.model.predict(frames)
        return probs.cpu().numpy(), embeds.cpu().numpy()  # .cpu() waits for the GPU: the time is the model's

    def _top_k(self, probs: np.ndarray, ok: np.ndarray) -> dict[str, pa.Array]:
        """Top-k names, scores and class ids per row; null on rows that failed."""
        ids, names, scores = top_k(probs, self.top_k, self.class_names)
        return {"labels": _per_ok_row(names, ok, pa.string()), "scores": _per_ok_row(scores, ok),
                "class_ids": _per_ok_row(ids, ok, pa.int32())}


def _per_ok_row(values: np.ndarray, ok: np.ndarray, value_type: pa.DataType = pa.float32()) -> pa.Array:
    """A list per row from the ok rows' values [n_ok, d], in order; null on the rows that failed."""
    width = values.shape[1] if values.ndim == 2 else 0
    offsets = np.concatenate([[0], np.cumsum(np.where(ok, width, 0))]).astype(np.int32)
    flat = pa.array(values.reshape(-1), type=value_type)
    return pa.ListArray.from_arrays(pa.array(offsets), flat, mask=pa.array(~ok))


def _segment_bounds(batch: pa.Table, ok: np.ndarray) -> dict[str, pa.Array]:
    """Window bounds as requested (the end clipped to the video); whole-video rows span 0..duration."""
    ok_mask = pa.array(ok)
    duration = batch["duration_s"]
    start = pc.coalesce(batch["start_s"], pc.if_else(ok_mask, 0.0, pa.scalar(None, pa.float64())))
    clipped = pc.if_else(ok_mask, pc.min_element_wise(batch["end_s"], duration), batch["end_s"])
    end = pc.if_else(pc.is_null(batch["end_s"]), duration, clipped)
    return {"segment_start_s": start, "segment_end_s": end}
