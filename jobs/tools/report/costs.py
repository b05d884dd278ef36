"""What labelling cost, from the run records: per video labelled and per hour of footage."""
from __future__ import annotations

from dataclasses import dataclass

from jobs.text import plural

COST_METRICS = (("wall_s", "wall time"), ("decode_cpu_s", "decode CPU"), ("model_s", "model"))


@dataclass
class CostLine:
    name: str  # "wall time", "decode CPU", "model"
    seconds: float  # summed over the runs that recorded it
    videos: int  # videos those runs labelled (ok or error)
    footage_s: float | None  # footage of the runs that recorded both this metric and footage_s
    footage_seconds: float | None  # the metric summed over those same runs

    @property
    def per_video(self) -> float:
        return self.seconds / self.videos

    @property
    def per_footage_hour(self) -> float | None:
        if not self.footage_s or self.footage_seconds is None:
            return None
        return self.footage_seconds / (self.footage_s / 3600.0)


def run_costs(runs: list[dict]) -> list[CostLine]:
    """What labelling cost, from the run records' ``totals`` (``wall_s``, ``decode_cpu_s``, ``model_s``,
    ``footage_s``, optionally ``videos``); a run without ``totals`` counts its ``elapsed_s`` as wall
    time. Each metric is summed over the runs that recorded it and divided by the videos of those
    same runs (and, per hour of footage, by the footage of the runs that recorded both), so runs
    recorded by older versions neither inflate nor dilute the figures. Runs that labelled nothing
    are left out."""
    lines = []
    for key, name in COST_METRICS:
        seconds = videos = 0.0
        footage = footage_seconds = 0.0
        counted = with_footage = 0
        for run in runs:
            totals = run.get("totals") if isinstance(run.get("totals"), dict) else {}
            value = _number(totals.get(key))
            if value is None and key == "wall_s":
                value = _number(run.get("elapsed_s"))
            n = _run_videos(run, totals)
            if value is None or not n:
                continue
            seconds, videos, counted = seconds + value, videos + n, counted + 1
            run_footage = _number(totals.get("footage_s"))
            if run_footage:
                footage, footage_seconds = footage + run_footage, footage_seconds + value
                with_footage += 1
        if counted:
            lines.append(CostLine(name, seconds, int(videos), footage if with_footage else None,
                                  footage_seconds if with_footage else None))
    return lines


def _run_videos(run: dict, totals: dict) -> int:
    n = _number(totals.get("videos"))
    if n is None:
        counts = run.get("counts") if isinstance(run.get("counts"), dict) else {}
        n = (_number(counts.get("ok")) or 0) + (_number(counts.get("error")) or 0)
    return int(n)


def _number(value) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def format_costs(runs: list[dict], hourly_price: float | None = None) -> list[str]:
    """Text lines for the cost of labelling (see run_costs); ``hourly_price`` (currency units per
    hour of the cluster) turns wall time into money."""
    lines = run_costs(runs)
    if not lines:
        return ["cost: not recorded in the run records (no totals or elapsed time)"]
    out = ["cost (per video labelled; per hour of footage where the runs recorded footage_s):"]
    for c in lines:
        hour = c.per_footage_hour
        per_hour = f"{duration(hour)} per footage hour" if hour is not None else "footage not recorded"
        out.append(f"  {c.name:<11} {duration(c.per_video)} per video  {per_hour}  "
                   f"({duration(c.seconds)} over {plural(c.videos, 'video')})")
    wall = next((c for c in lines if c.name == "wall time"), None)
    if hourly_price is not None and wall is not None:
        money = hourly_price * wall.per_video / 3600.0
        text = f"  price       {money:.6f} per video at {hourly_price:g} per cluster hour"
        if wall.per_footage_hour is not None:
            text += f", {hourly_price * wall.per_footage_hour / 3600.0:.4f} per footage hour"
        out.append(text)
    return out


def duration(seconds: float) -> str:
    """Seconds as a short reading: "0.05 s", "2.00 s", "12.3 s", "1.7 min", "2.00 h"."""
    if seconds < 60:
        return f"{seconds:.3g} s" if seconds < 0.1 else f"{seconds:.2f} s" if seconds < 10 else f"{seconds:.1f} s"
    if seconds < 3600:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.2f} h"

