"""What the job prints: our own log lines, and Ray's kept quiet unless -v/--verbose.

``configure(verbose)`` is called by the CLI; ``quiet_ray()`` by the pipeline right after it
connects to Ray (it needs ``ray.data`` imported, which installs Ray's own logging and warning
filters, so ours have to come after them).

Without -v, what Ray prints on its own is trimmed to what needs the operator's attention:

- Ray Data's progress bars (TTY) and, without a TTY, its periodic "Total Progress" log lines
  (``ray.data._internal.progress.logging_progress``) are off: ``jobs.progress.Progress``
  reports videos instead of Ray blocks. Ray Data's INFO lines (execution plan, "Starting
  execution", stats) stay in its log file (``ray-data.log`` in the Ray session folder) but leave
  the console; its warnings (memory, hanging tasks) still reach it.
- The ``RayDeprecationWarning`` for ``ray_remote_args`` (the pipeline passes ``max_retries``
  through it on purpose; see pyproject.toml's Ray bound) is ignored.

Under -v nothing of Ray's is touched. The debug logs of botocore, boto3, s3transfer and
urllib3 stay at WARNING either way: they carry request signatures (access key ids).
"""
from __future__ import annotations

import logging
import sys
import warnings

SECRET_LOGGERS = ("botocore", "boto3", "s3transfer", "urllib3")
FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

# Ray emits the warning in ray/data/dataset.py (_warn_on_ray_remote_args), with a stacklevel
# that attributes it to the first frame outside that file: the code calling
# Dataset.map_batches. A filter's `module` is matched against that caller's module name, so a
# filter on "ray.data.dataset" never matches; the caller is jobs.pipeline.
RAY_REMOTE_ARGS_MESSAGE = r"`ray_remote_args` is deprecated"
RAY_REMOTE_ARGS_CALLER = r"jobs\.pipeline\Z"

# Ray Data's loggers that log progress on their own: the progress managers (the non-TTY
# "Total Progress" lines, and a warning when bars are turned off).
RAY_DATA_PROGRESS_LOGGER = "ray.data._internal.progress"

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
    """Turn Ray's own progress output and known-harmless warnings off, unless verbose.

    ``verbose`` defaults to the CLI's -v (``is_verbose()``). Call it after ``ray.init`` (or
    whenever Ray is connected): it imports ``ray.data`` and only then installs its filters.
    """
    if verbose is None:
        verbose = is_verbose()
    if verbose:
        return
    import ray.data
    from ray.util.annotations import RayDeprecationWarning

    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False
    ctx.enable_operator_progress_bars = False
    ctx.print_on_execution_start = False

    # Ray Data logs to "ray.data" (propagate=False) through a file handler and a console
    # handler; only the console one is raised, the file keeps everything.
    for handler in logging.getLogger("ray.data").handlers:
        if _is_console(handler):
            handler.setLevel(max(handler.level, logging.WARNING))
    logging.getLogger(RAY_DATA_PROGRESS_LOGGER).setLevel(logging.ERROR)

    # Inserted in front of Ray's own filter ("module" for every RayDeprecationWarning, added
    # when ray.util.annotations is imported), which is why this runs after Ray is imported.
    warnings.filterwarnings("ignore", message=RAY_REMOTE_ARGS_MESSAGE, category=RayDeprecationWarning,
                            module=RAY_REMOTE_ARGS_CALLER)


def _is_console(handler: logging.Handler) -> bool:
    # Ray Data's SessionFileHandler (ray-data.log) is a plain Handler; its console handler a StreamHandler.
    return isinstance(handler, logging.StreamHandler) and not isinstance(handler, logging.FileHandler)


def local_ray_auth_mode(verbose: bool | None = None) -> None:
    """Before ``ray.init()`` starts a local Ray: keep Ray 2.60's default, without its warning.

    Ray 2.60 turns token authentication on for a Ray it starts itself (``ray.init()`` with no
    address) and logs a warning about it ("Token authentication is enabled for this Ray
    cluster", ray/_private/authentication/authentication_token_setup.py). Setting
    RAY_AUTH_MODE ourselves is not an option: Ray reads its auth configuration when it is
    imported, so a later change leaves the client and the GCS disagreeing. The warning is
    dropped by a filter on that logger instead; under verbose it stays.
    """
    if verbose is None:
        verbose = is_verbose()
    target = logging.getLogger("ray._private.authentication.authentication_token_setup")
    for existing in list(target.filters):
        if isinstance(existing, _DropTokenAuthNotice):
            target.removeFilter(existing)
    if not verbose:
        target.addFilter(_DropTokenAuthNotice())


class _DropTokenAuthNotice(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "Token authentication is enabled for this Ray cluster" not in record.getMessage()
