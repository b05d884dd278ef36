"""Stage 2: the model (stateful, GPU or CPU): decoded clips -> label rows in the output schema."""
from __future__ import annotations

import datetime as dt
import logging
import os
import time

import numpy as np
import pyarrow as pa

from jobs.schema import output_schema
from jobs.stages.decode import node_id

log = logging.getLogger("stam_label")


class Labeler:
    """Holds one model; turns decoded batches into finished label rows (Arrow tables)."""

    def __init__(self, *, weights: str, sha256: str | None, precision: str, top_k: int, class_names: list[str],
                 model_name: str, run_id: str, mode: str, embeddings: bool, probs: bool, threads: int | None):
        import torch

        import stam_core

        if not torch.cuda.is_available():
            # Ray pins OMP threads to the actor's CPU share; on a CPU node the model should use
            # the cores it timeshares with decoding, as the sizing guide assumes.
            torch.set_num_threads(threads or os.cpu_count() or 1)
        device = "cuda" if torch.cuda.is_available() else "cpu"
        self.model = stam_core.load_model(weights, device=device, precision=precision, sha256=sha256)
        self.clips_to_tensor = stam_core.clips_to_tensor
        self.top_k = min(top_k, self.model.num_classes)
        self.class_names = class_names
        self.schema = output_schema(self.model.embed_dim if embeddings else 0, probs)
        self.static = {"model": model_name, "weights_sha256": sha256, "precision": self.model.precision,
                       "run_id": run_id, "mode": mode}
        self.embeddings, self.probs = embeddings, probs
        self.windowed = mode != "video"
        # Rows carry self.model.precision; the driver logs it once from the first batch.
        log.info("model %s loaded on %s, precision %s (requested %s)", model_name, device,
                 self.model.precision, precision)

    def __call__(self, batch: dict[str, np.ndarray]) -> pa.Table:
        ok = batch["ok"].astype(bool)
        started = time.perf_counter()
        probs, embeds = self._predict(batch["frames"][ok])
        model_s = time.perf_counter() - started
        labels = self._top_k(probs, embeds, ok)
        table = self._rows(batch, ok, labels)
        n = len(ok)
        # Where each stage ran and the model's time, for the run record; never written.
        table = table.append_column("_decode_node", pa.array(batch["_decode_node"], pa.string()))
        table = table.append_column("_model_node", pa.array([node_id()] * n, pa.string()))
        table = table.append_column("_model_s", pa.array([model_s / n] * n, pa.float64()))  # its share
        if self.windowed:
            # For the driver's video-level row only; never written.
            table = table.append_column("_num_segments", pa.array(batch["num_segments"], pa.int32()))
            table = table.append_column("_probs", pa.array(labels["probs"], pa.list_(pa.float32())))
        return table

    def _predict(self, frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Probabilities and embeddings of the decoded clips (float32, on the host)."""
        if not len(frames):
            return np.zeros((0, self.model.num_classes), np.float32), np.zeros((0, self.model.embed_dim), np.float32)
        probs, embeds = self.model.predict(self.clips_to_tensor(frames, self.model.device))
        return probs.cpu().numpy(), embeds.cpu().numpy()  # .cpu() waits for the GPU: the time is the model's

    def _top_k(self, probs: np.ndarray, embeds: np.ndarray, ok: np.ndarray) -> dict[str, list]:
        """Per row: top-k names, scores, class ids (None for rows that failed earlier)."""
        out = {name: [None] * len(ok) for name in ("labels", "scores", "class_ids", "embedding", "probs")}
        for j, i in enumerate(np.flatnonzero(ok)):
            p = probs[j]
            top = np.argsort(-p, kind="stable")[: self.top_k]
            out["labels"][i] = [self.class_names[c] for c in top]
            out["scores"][i] = p[top].astype(np.float32)
            out["class_ids"][i] = top.astype(np.int32)
            out["embedding"][i] = embeds[j]
            out["probs"][i] = p.astype(np.float32)
        return out

    def _rows(self, batch: dict[str, np.ndarray], ok: np.ndarray, labels: dict[str, list]) -> pa.Table:
        n = len(ok)
        seg_starts, seg_ends = _segment_bounds(batch, ok)
        columns = {
            "video_uri": batch["video_uri"],
            "segment_index": batch["segment_index"],
            "segment_start_s": seg_starts,
            "segment_end_s": seg_ends,
            "status": np.where(ok, "ok", "error"),
            "error": [None if k else str(e) for k, e in zip(ok, batch["error"])],
            "error_kind": [None if k else str(e) for k, e in zip(ok, batch["error_kind"])],
            "labels": labels["labels"], "scores": labels["scores"], "class_ids": labels["class_ids"],
            "label": [v[0] if v else None for v in labels["labels"]],
            "score": [float(v[0]) if v is not None and len(v) else None for v in labels["scores"]],
            "duration_s": _null_where(batch["duration_s"], ok),
            "fps": _null_where(batch["fps"], ok),
            "width": _null_where(batch["width"], ok), "height": _null_where(batch["height"], ok),
            "codec": _null_where(batch["codec"], ok),
            "frame_indices": [list(v) if k else None for k, v in zip(ok, batch["frame_indices"])],
            "frame_timestamps": [list(v) if k else None for k, v in zip(ok, batch["frame_timestamps"])],
            "decoder": _null_where(batch["decoder"], ok),
            "warnings": [str(w).split("\n") if k and w else None for k, w in zip(ok, batch["warnings"])],
            "resize": _null_where(batch["resize"], ok),
            "decode_cpu_ms": [None if np.isnan(v) else float(v) for v in batch["decode_cpu_ms"]],
            "source_size": [None if s < 0 else int(s) for s in batch["source_size"]],
            "source_version": [str(v) or None for v in batch["source_version"]],
            "labelled_at": [dt.datetime.now(dt.timezone.utc)] * n,
            "embedding": labels["embedding"], "probs": labels["probs"],
        }
        for key, value in self.static.items():
            columns[key] = [value] * n
        return pa.table({f.name: pa.array(columns[f.name], type=f.type) for f in self.schema}, schema=self.schema)


def _null_where(values: np.ndarray, ok: np.ndarray) -> list:
    return [(v.item() if isinstance(v, np.generic) else v) if k else None for k, v in zip(ok, values)]


def _segment_bounds(batch: dict[str, np.ndarray], ok: np.ndarray) -> tuple[list, list]:
    """Window bounds as requested (end clipped to the video); whole-video rows span 0..duration."""
    starts, ends = [], []
    for k, s, e, d in zip(ok, batch["start_s"], batch["end_s"], batch["duration_s"]):
        starts.append(float(s) if s >= 0 else (0.0 if k else None))
        if e >= 0:
            ends.append(float(min(e, d)) if k else float(e))
        else:
            ends.append(float(d) if k else None)
    return starts, ends
