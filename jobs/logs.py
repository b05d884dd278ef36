"""What the job prints: our own log lines, and Ray's kept quiet unless -v/--verbose.

``configure(verbose)`` is called by the CLI; ``quiet_ray()`` and ``native_stderr_to_ray_logs()``
by jobs/placement.py right after it connects to Ray (``ray.data``, once imported, installs Ray
Data's own logging, so ours has to come after it).

Without -v, what Ray prints on its own is trimmed through Ray's public settings:

- Ray Data's progress bars and its non-TTY progress log lines are off
  (``DataContext.enable_progress_bars``): ``jobs.progress.Progress`` reports videos instead of
  Ray blocks. Ray Data's log lines (execution plan, stats, warnings) stay in its log file
  (``ray-data.log`` in the Ray session folder) but leave the console: its console handler on
  the ``ray.data`` logger shows errors only.
- What the driver's native code writes to file descriptor 2 (Ray's core, C++) goes to a file
  beside the driver's Ray logs (``native_stderr_to_ray_logs``). Ray's core prints one ERROR
  line on every run there: "Actor ... has constructor arguments in the object store and
  max_restarts > 0" (ray-project/ray#53727). Ray Data always passes an actor pool's function
  (with its constructor arguments) and its DataContext to the actors as object references,
  ``ray.put`` whatever their size, and creates the actors with unlimited restarts: the fault
  tolerance the job wants, and no public parameter changes it. Those objects are owned by the
  driver and live on its node, so losing a worker node does not take them with it.
  ``RAY_BACKEND_LOG_LEVEL=fatal`` would hide the line too, but prints a line of its own.

Under -v nothing of Ray's is touched. The debug logs of botocore, boto3, s3transfer and
urllib3 stay at WARNING either way: they carry request signatures (access key ids).
"""
from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

SECRET_LOGGERS = ("botocore", "boto3", "s3transfer", "urllib3")
FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

_state = {"verbose": False, "cli": False}


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
    _state["cli"] = True


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


def native_stderr_to_ray_logs(verbose: bool | None = None) -> Path | None:
    """Without -v, in the CLI: this process's native stderr (file descriptor 2) goes to a file.

    Ray's core (C++) in the driver writes its ERROR lines to fd 2 as well as to its log file;
    one of them comes on every run (see the module docstring), and no public setting turns it
    off without also printing another line. Python's own stderr (our log lines, progress,
    errors) is moved to a copy of the console descriptor first, so only what native code writes
    to fd 2 (Ray's core, the storage SDKs) lands in ``stam-label-driver-<pid>.err`` beside the
    driver's Ray logs. Call it after ``ray.init``; returns the file, or None when left alone
    (-v, a library caller, a test runner capturing stderr).
    """
    if verbose is None:
        verbose = is_verbose()
    if verbose or not _state["cli"] or sys.stderr is not sys.__stderr__ or sys.stderr is None:
        return None
    import ray

    context = ray.get_runtime_context()
    path = Path(context.get_temp_dir()) / context.get_session_name() / "logs" / f"stam-label-driver-{os.getpid()}.err"
    try:
        target = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    except OSError:
        return None  # no such folder (a driver on a machine without Ray's session files): leave stderr
    sys.stderr.flush()
    console = os.dup(2)
    sys.stderr = open(console, "w", buffering=1, encoding=sys.stderr.encoding,  # noqa: SIM115 (for the life of the process)
                      errors="backslashreplace")
    os.dup2(target, 2)
    os.close(target)
    return path
