"""Small wording helpers for what the commands print: counts with the right plural, CPU time.

One place so that "1 videos" and "about 0.00 CPU-hours" do not come back message by message.
"""
from __future__ import annotations


def plural(count: int, noun: str, many: str | None = None) -> str:
    """``plural(1, "video")`` is "1 video", ``plural(3, "video")`` "3 videos" (``many`` for irregular nouns)."""
    return f"{count} {noun if count == 1 else (many or noun + 's')}"


def cpu_time(hours: float, *, estimate: bool = False) -> str:
    """CPU time in a unit that shows it: "40 CPU-seconds", "12 CPU-minutes", "3.5 CPU-hours";
    an ``estimate`` says "about" ("about 12 CPU-minutes", "under a CPU-second")."""
    seconds = max(0.0, hours * 3600)
    if 0 < seconds < 0.5:
        return "under a CPU-second"
    about = "about " if estimate else ""
    if seconds < 90:
        return about + plural(round(seconds), "CPU-second")
    if seconds < 90 * 60:
        return about + plural(round(seconds / 60), "CPU-minute")
    return f"{about}{hours:.1f} CPU-hours"
