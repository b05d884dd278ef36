"""What the job prints: our own log lines, and Ray's kept quiet unless -v/--verbose.

``configure(verbose)`` is called by the CLI; ``quiet_ray()`` by jobs/placement.py right after
it connects to Ray (it needs ``ray.data`` imported, which installs Ray Data's own logging, so
ours has to come after it), and ``quiet_ray_backend()`` around ``ray.init``.

Without -v, what Ray prints on its own is trimmed through Ray's public settings:

- Ray Data's progress bars and its non-TTY progress log lines are off
  (``DataContext.enable_progress_bars``): ``jobs.progress.Progress`` reports videos instead of
  Ray blocks. Ray Data's log lines (execution plan, stats, warnings) stay in its log file
  (``ray-data.log`` in the Ray session folder) but leave the console: its console handler on
  the ``ray.data`` logger shows errors only.
- The driver's own Ray core (C++) logs only fatal errors (``RAY_BACKEND_LOG_LEVEL``, read when
  ``ray.init`` starts it). Its one line on every run is an ERROR about the model actors,
  "constructor arguments in the object store and max_restarts > 0" (ray-project/ray#53727):
  Ray Data always passes an actor pool's function and DataContext to the actors as object
  references, whatever their size, and gives the actors unlimited restarts, which is the fault
  tolerance the job wants. Those objects are owned by the driver and live on its node, so a
  lost worker node does not take them with it.

Under -v nothing of Ray's is touched. The debug logs of botocore, boto3, s3transfer and
urllib3 stay at WARNING either way: they carry request signatures (access key ids).
"""
from __future__ import annotations

import logging
import os
import sys
from contextlib import contextmanager

SECRET_LOGGERS = ("botocore", "boto3", "s3transfer", "urllib3")
FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
BACKEND_LOG_LEVEL = "RAY_BACKEND_LOG_LEVEL"

_state = {"verbose": False}


class _StderrHandler(logging.StreamHandler):
    """A handler that writes to whatever sys.stderr is at the time (click's test runner swaps it)."""

    def __init__(self):
        super().__init__(sys.stderr)

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value):  # StreamHandler.__init__ assigns it; sys.stderr is always used
        pass


_handler: logging.Handler | None = None


def configure(verbose: bool) -> None:
    """Log INFO (DEBUG with verbose) to stderr; safe to call again (a later -v turns debug on)."""
    global _handler
    root = logging.getLogger()
    if _handler is None:
        _handler = _StderrHandler()
        _handler.setFormatter(logging.Formatter(FORMAT))
    if _handler not in root.handlers:
        root.addHandler(_handler)
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    for name in SECRET_LOGGERS:
        # Their debug logs carry request signatures (access key ids); never show them.
        logging.getLogger(name).setLevel(logging.WARNING)
    _state["verbose"] = bool(verbose)


def is_verbose() -> bool:
    """What the last ``configure`` call said (False when it was never called, as in a library)."""
    return _state["verbose"]


def quiet_ray(verbose: bool | None = None) -> None:
    """Turn Ray Data's progress output off and its console to errors only, unless verbose.

    ``verbose`` defaults to the CLI's -v (``is_verbose()``). Call it after ``ray.init`` (or
    whenever Ray is connected): it imports ``ray.data``.
    """
    if verbose is None:
        verbose = is_verbose()
    if verbose:
        return
    import ray.data

    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False
    ctx.enable_operator_progress_bars = False
    ctx.print_on_execution_start = False

    # Ray Data logs to "ray.data" (propagate=False) through a file handler and a console
    # handler; only the console one is raised, the file keeps everything.
    for handler in logging.getLogger("ray.data").handlers:
        if _is_console(handler):
            handler.setLevel(max(handler.level, logging.ERROR))


def _is_console(handler: logging.Handler) -> bool:
    # Ray Data's SessionFileHandler (ray-data.log) is a plain Handler; its console handler a StreamHandler.
    return isinstance(handler, logging.StreamHandler) and not isinstance(handler, logging.FileHandler)


@contextmanager
def quiet_ray_backend(verbose: bool | None = None):
    """Around ``ray.init``: the driver's Ray core logs only fatal errors, unless verbose.

    ``RAY_BACKEND_LOG_LEVEL`` is Ray's documented setting for its C++ logging, read when a
    process starts its core; it is set for the ``ray.init`` call only, so Ray processes started
    later from this environment keep their own level. A value the user set wins.
    """
    if verbose is None:
        verbose = is_verbose()
    if verbose or BACKEND_LOG_LEVEL in os.environ:
        yield
        return
    os.environ[BACKEND_LOG_LEVEL] = "fatal"
    try:
        yield
    finally:
        os.environ.pop(BACKEND_LOG_LEVEL, None)
