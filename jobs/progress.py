"""Progress of a run in videos (not Ray blocks): done/total, ok/error, videos/s, ETA.

In a terminal it is a tqdm bar. Without one (logs of a CronJob, a pipe), or in a terminal that
reports no size (a pty under ``script``, some CI consoles: tqdm then prints nothing), it is one
plain line every ``interval_s`` seconds, written by a background thread so that a stalled run
still reports, and a last line at ``close()``:

    progress: 120/1000 videos (118 ok, 2 error), 3.1 videos/s, ETA 4m44s
    progress: done, 1000/1000 videos (990 ok, 10 error) in 5m21s, 3.1 videos/s

(or ``progress: stopped, ...`` when the ``with`` block ends with an exception).

Until the first video is done the bar and the lines say what is going on (workers starting,
the model loading) instead of sitting at 0 with an unknown ETA.

Durations: ``started`` is the run's start (the one wall time of a run, which its summary and
run record also use), on the ``clock`` given; the rate and ETA are over the time since the
``Progress`` was made, when labelling starts, so that planning does not skew them.
"""
from __future__ import annotations

import os
import sys
import threading
import time
from typing import Callable, TextIO

STARTING = "starting workers, loading the model"  # what a run does before its first video is done


def format_duration(seconds: float) -> str:
    """4m44s, 1h02m, 12s."""
    seconds = max(0, int(round(seconds)))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    if minutes:
        return f"{minutes}m{secs:02d}s"
    return f"{secs}s"


class Progress:
    """Counts videos as they finish; ``update(ok=, error=)`` adds to the counts."""

    def __init__(self, total: int | None, *, interval_s: float = 30.0, stream: TextIO | None = None,
                 enabled: bool = True, clock: Callable[[], float] = time.monotonic, started: float | None = None):
        self.total = total
        self.interval_s = interval_s
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = enabled and interval_s > 0  # --progress-interval 0: no progress output
        self.ok = 0
        self.error = 0
        self._clock = clock
        self._started = clock()  # labelling starts: the rate's origin
        self._run_started = self._started if started is None else started  # the run's: the elapsed time's
        self._lock = threading.Lock()
        self._closed = False
        self._bar = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        if not self.enabled:
            return
        if _isatty(self.stream) and _terminal_width(self.stream) != 0:
            from tqdm import tqdm

            self._bar = tqdm(total=total, file=self.stream, unit=" videos", desc=STARTING, dynamic_ncols=True,
                             postfix={"ok": 0, "error": 0})
        else:
            self._thread = threading.Thread(target=self._report_every_interval, name="stam-progress", daemon=True)
            self._thread.start()

    @property
    def done(self) -> int:
        return self.ok + self.error

    def update(self, ok: int = 0, error: int = 0) -> None:
        with self._lock:
            self.ok += ok
            self.error += error
            if self._bar is not None and (ok or error):
                if self._bar.desc == STARTING:
                    self._bar.set_description("labelling", refresh=False)
                self._bar.set_postfix(ok=self.ok, error=self.error, refresh=False)
                self._bar.update(ok + error)

    def rate(self) -> float:
        """Videos per second since the start."""
        elapsed = self._clock() - self._started
        return self.done / elapsed if elapsed > 0 else 0.0

    def line(self) -> str:
        """The plain progress line, as written without a terminal."""
        with self._lock:
            done, ok, error = self.done, self.ok, self.error
        rate = self.rate()
        of = f"{done}/{self.total}" if self.total is not None else f"{done}"
        if done == 0:  # nothing to measure yet: say what is happening
            return f"progress: 0/{self.total if self.total is not None else '?'} videos, {STARTING} " \
                   f"({format_duration(self._clock() - self._run_started)} into the run)"
        text = f"progress: {of} {_videos(self.total, done)} ({ok} ok, {error} error), {_rate(rate)} videos/s"
        if self.total is not None and done < self.total:
            text += f", ETA {format_duration((self.total - done) / rate)}" if rate > 0 else ", ETA unknown"
        return text

    def final_line(self, stopped: bool = False) -> str:
        with self._lock:
            done, ok, error = self.done, self.ok, self.error
        of = f"{done}/{self.total}" if self.total is not None else f"{done}"
        seconds = self._clock() - self._run_started
        elapsed = format_duration(seconds)
        rate = done / seconds if seconds > 0 else 0.0  # over the same time as the summary's rate
        videos = _videos(self.total, done)
        how = f"stopped, {of} {videos} ({ok} ok, {error} error) after {elapsed}" if stopped else \
            f"done, {of} {videos} ({ok} ok, {error} error) in {elapsed}"
        return f"progress: {how}, {_rate(rate)} videos/s"

    def _report_every_interval(self) -> None:
        while not self._stop.wait(self.interval_s):
            self._write(self.line())

    def _write(self, text: str) -> None:
        try:
            self.stream.write(text + "\n")
            self.stream.flush()
        except (OSError, ValueError):  # a closed stream must not break the run
            pass

    def close(self, stopped: bool = False) -> None:
        """The last line (``stopped``: the run ended early, e.g. on an error); idempotent."""
        if self._closed:
            return
        self._closed = True
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
            self._write(self.final_line(stopped))
        if self._bar is not None:
            self._bar.close()

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.close(stopped=exc_type is not None)


def _videos(total: int | None, done: int) -> str:
    """ "video" for a run of one (1/1 video), else "videos"."""
    return "video" if (total if total is not None else done) == 1 else "videos"


def _rate(rate: float) -> str:
    return f"{rate:.1f}" if rate >= 0.1 or rate == 0 else f"{rate:.2g}"


def _terminal_width(stream) -> int | None:
    """Columns of the stream's terminal: 0 when it reports no size, None when it cannot be asked."""
    try:
        fd = stream.fileno()
    except (AttributeError, OSError, ValueError):  # not a real file (a test's stream): cannot tell
        return None
    try:
        return os.get_terminal_size(fd).columns
    except OSError:
        return 0


def _isatty(stream) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False
