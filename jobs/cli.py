"""The `stam-label` command: composable click subcommands over jobs.pipeline and jobs.table.

Exit codes (docs/usage.md): 0 ok; 1 more than --max-error-rate of the labelled videos
failed, or every one of them did; 2 bad usage (click's); 3 the run cannot start (input,
output, weights, Ray: ``jobs.errors.JobError``, ``jobs.storage.StorageError``); 4 it failed
mid-run (``jobs.errors.JobFailed``); 130 interrupted (``jobs.errors.JobInterrupted``, Ctrl-C).
Errors are one line, ``Error: ...``, on stderr, without a traceback (-v logs it).

Options shared between commands are defined once, in ``OPTIONS``; ``run_options`` puts all
of run's on a command, ``shared_options(*names)`` some of them (``evaluate`` does).
"""
from __future__ import annotations

import copy
import difflib
import functools
import importlib
import logging
import sys

import click

from jobs import logs
from jobs.errors import (
    EXIT_CANNOT_START,
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_TOO_MANY_ERRORS,
    JobError,
)
from jobs.storage import DEFAULT_EXTENSIONS, StorageError
from jobs.summary import print_plan, print_summary

log = logging.getLogger("stam_label")

DEFAULT_MAX_ERROR_RATE = 0.5
DEFAULT_PROGRESS_INTERVAL_S = 30.0
DEFAULT_MAX_PIXELS = 8192 * 4320  # 8K, as jobs.pipeline.DEFAULT_MAX_PIXELS (tests/test_cli.py checks)


# ---- errors and exit codes ---------------------------------------------------------------
class Failure(click.ClickException):
    """A one-line ``Error: ...`` on stderr and a documented exit code."""

    def __init__(self, message: str, exit_code: int):
        super().__init__(message)
        self.exit_code = exit_code


def exit_code_for(exc: BaseException) -> int | None:
    """The documented exit code of a known error; None for anything else (a bug)."""
    if isinstance(exc, JobError):
        return exc.exit_code
    if isinstance(exc, StorageError):
        return EXIT_CANNOT_START
    return None


def _one_line(exc: BaseException) -> str:
    text = " ".join(line.strip() for line in str(exc).splitlines() if line.strip())
    return text or type(exc).__name__


def cli_errors(fn):
    """Turn the job's typed errors (and Ctrl-C) into ``Error: ...`` and their exit codes."""
    if getattr(fn, "_stam_cli_errors", False):
        return fn

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except KeyboardInterrupt:
            raise Failure("interrupted; the rows committed so far are kept (a rerun labels the rest)",
                          EXIT_INTERRUPTED) from None
        except Exception as exc:
            code = exit_code_for(exc)
            if code is None:
                log.debug("unexpected error", exc_info=True)
                raise Failure(f"{type(exc).__name__}: {_one_line(exc)} (unexpected; -v logs the traceback)",
                              EXIT_FAILED) from None
            log.debug("%s", type(exc).__name__, exc_info=True)
            raise Failure(_one_line(exc), code) from None

    wrapper._stam_cli_errors = True
    return wrapper


# ---- -v/--verbose, before or after the subcommand ----------------------------------------
def _verbose_callback(ctx: click.Context, param: click.Parameter, value: bool) -> None:
    if value:  # -v after the subcommand; never turns off a -v given before it
        logs.configure(True)


def verbose_option() -> click.Option:
    return click.Option(["-v", "--verbose"], is_flag=True, expose_value=False, is_eager=True,
                        callback=_verbose_callback, help="Log debug details (also accepted before the command).")


def adopt(command: click.Command) -> click.Command:
    """A copy of a subcommand with -v/--verbose and the documented exit codes.

    A copy: the command object its module defines (and tests invoke) stays as it is.
    """
    command = copy.copy(command)
    command.params = list(command.params)
    if not any(p.name == "verbose" for p in command.params):
        command.params.append(verbose_option())
    if command.callback is not None:
        command.callback = cli_errors(command.callback)
    return command


# ---- --config FILE -----------------------------------------------------------------------
NOT_CONFIGURABLE = {"help", "config", "version"}


def config_key(option: click.Option) -> str:
    """An option's key in a --config file: its (first) long name with underscores (--batch-size: batch_size)."""
    longs = [o for o in option.opts if o.startswith("--")] or option.opts
    return longs[0].lstrip("-").replace("-", "_")


def _load_config(ctx: click.Context, param: click.Parameter, path: str | None) -> None:
    if not path:
        return
    import yaml

    def bad(message: str):
        return click.BadParameter(f"{path}: {message}", ctx=ctx, param=param)

    try:
        with open(path, encoding="utf-8") as f:
            data = yaml.safe_load(f)
    except OSError as exc:
        raise bad(f"cannot read it ({exc.strerror or exc})") from None
    except yaml.YAMLError as exc:
        raise bad(f"not valid YAML ({_one_line(exc)})") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise bad(f"expected a mapping of option names to values (batch_size: 32), found a {type(data).__name__}")
    options = {config_key(p): p for p in ctx.command.params
               if isinstance(p, click.Option) and p.name not in NOT_CONFIGURABLE}
    defaults = {}
    for key, value in data.items():
        option = options.get(str(key).replace("-", "_"))
        if option is None:
            close = difflib.get_close_matches(str(key), list(options), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise bad(f"unknown key {key!r}{hint}; the keys are the options of `{ctx.command_path}` "
                      f"with underscores: {', '.join(sorted(options))}")
        if isinstance(value, (list, tuple)) and not option.multiple and option.nargs == 1:
            value = ",".join(str(v) for v in value)  # extensions: [mp4, mkv] as well as "mp4,mkv"
        defaults[option.name] = value
    # Values from the file act as defaults: an option given on the command line wins.
    ctx.default_map = {**(ctx.default_map or {}), **defaults}


def config_option(fn):
    """--config FILE: option values from a YAML mapping (run, evaluate)."""
    return click.option(
        "--config", type=click.Path(exists=True, dir_okay=False), is_eager=True, expose_value=False,
        callback=_load_config, metavar="FILE",
        help="YAML file of option values (keys: the option names with underscores, e.g. batch_size: 32); "
             "options on the command line win.",
    )(fn)


# ---- options shared between commands -----------------------------------------------------
OPTIONS: dict[str, tuple[tuple[str, ...], dict]] = {
    "weights": (("--weights",), dict(
        default="stam_16", show_default=True,
        help="Release name (stam_8/16/32/64), local path, http(s) or s3:// URL of a checkpoint.")),
    "weights_sha256": (("--weights-sha256",), dict(default=None, help="Refuse weights whose sha256 differs.")),
    "batch_size": (("--batch-size",), dict(
        default=8, show_default=True, type=click.IntRange(1),
        help="Clips per model forward pass (raise it on GPUs: 32-128).")),
    "top_k": (("--top-k",), dict(default=5, show_default=True, type=click.IntRange(1), help="Labels kept per row.")),
    "precision": (("--precision",), dict(
        type=click.Choice(["auto", "fp32", "bf16", "fp16"]), default="auto", show_default=True,
        help="Model precision; auto picks bf16/fp16 where the device runs it fast.")),
    "decode_workers": (("--decode-workers",), dict(
        type=click.IntRange(1), default=None,
        help="CPU cores to decode on, at most (default: every CPU Ray can give them); "
             "two decode tasks run per core.")),
    "model_workers": (("--model-workers",), dict(
        type=click.IntRange(1), default=1, show_default=True, help="Model actors (one per GPU on a GPU cluster).")),
    "gpus_per_worker": (("--gpus-per-worker",), dict(
        type=float, default=1.0, show_default=True,
        help="GPUs per model actor when the cluster has GPUs (fractions share a GPU).")),
    "model_threads": (("--model-threads",), dict(
        type=click.IntRange(1), default=None,
        help="CPU inference threads per model actor without a GPU (default: all cores).")),
    "address": (("--address",), dict(
        envvar="RAY_ADDRESS", default=None,
        help="Ray cluster to join (also RAY_ADDRESS); default: start a local Ray.")),
    "limit": (("--limit",), dict(type=click.IntRange(1), default=None, help="Label at most N listed videos.")),
    "max_error_rate": (("--max-error-rate",), dict(
        type=click.FloatRange(0, 1), default=DEFAULT_MAX_ERROR_RATE, show_default=True,
        help="Exit 1 when more than this share of the labelled videos failed (always when all of them did).")),
    "relabel": (("--relabel",), dict(is_flag=True, help="Label every video again, even those already labelled.")),
    "decode_timeout": (("--decode-timeout",), dict(
        type=float, default=120.0, show_default=True,
        help="Seconds one video may take to decode before it becomes an error row.")),
    "extensions": (("--extensions",), dict(
        default=",".join(e.lstrip(".") for e in DEFAULT_EXTENSIONS), show_default=True,
        help="Video file extensions picked from folders and prefixes.")),
    "commit_every": (("--commit-every", "--rows-per-file", "commit_every"), dict(
        type=click.IntRange(1), default=2000, show_default=True, metavar="ROWS",
        help="Commit the labelled rows every ROWS rows (also at most what a killed run loses).")),
    "commit_interval_s": (("--commit-interval", "commit_interval_s"), dict(
        type=click.FloatRange(min=0, min_open=True), default=60.0, show_default=True, metavar="SECONDS",
        help="... or every SECONDS since the last commit, whichever comes first.")),
    "commit_timeout_s": (("--commit-timeout", "commit_timeout_s"), dict(
        type=click.FloatRange(min=0, min_open=True), default=300.0, show_default=True, metavar="SECONDS",
        help="Retry a failing commit (storage errors, conflicts) with backoff this long before the run fails (exit 4).")),
    "labels_file": (("--labels", "labels_file"), dict(
        type=click.Path(exists=True, dir_okay=False), default=None,
        help="Class names, one per line, for checkpoints fine-tuned on other classes.")),
    "window_s": (("--window-seconds", "window_s"), dict(
        type=click.FloatRange(min=0, min_open=True), default=None,
        help="Label each window of W seconds (plus a video-level row, segment_index -1).")),
    "stride_s": (("--stride-seconds", "stride_s"), dict(
        type=click.FloatRange(min=0, min_open=True), default=None,
        help="Seconds between window starts (default: the window length).")),
    "embeddings": (("--embeddings",), dict(is_flag=True, help="Add the 768-d video embedding column.")),
    "probs": (("--probs",), dict(is_flag=True, help="Add the full probability vector column.")),
    "max_pixels": (("--max-pixels",), dict(
        type=click.IntRange(1), default=DEFAULT_MAX_PIXELS, show_default=True,
        help="Videos with more pixels per frame are error rows (too_large), read from the header only.")),
    "resize": (("--resize",), dict(
        type=click.Choice(["exact", "fast"]), default="exact", show_default=True,
        help="exact: the official PIL resize; fast: scale in YUV with swscale (cheaper, not bit-exact; "
             "see docs/decoding.md).")),
    "allow_local_paths": (("--allow-local-paths",), dict(
        is_flag=True, help="Allow local paths in a manifest stored in S3 (refused by default).")),
    "dry_run": (("--dry-run",), dict(
        is_flag=True, help="List and plan only: how many videos would be labelled, the first ones, an estimate "
                           "of the decode CPU time; nothing is written.")),
    "progress_interval_s": (("--progress-interval", "progress_interval_s"), dict(
        type=click.FloatRange(min=0), default=DEFAULT_PROGRESS_INTERVAL_S, show_default=True, metavar="SECONDS",
        help="Seconds between progress lines when stderr is not a terminal (a bar when it is); 0: no progress.")),
}

RUN_OPTIONS = tuple(OPTIONS)  # all of them, in this order


def option(name: str, **overrides):
    """The click.option of OPTIONS[name], with some of its settings overridden."""
    decls, settings = OPTIONS[name]
    return click.option(*decls, **{**settings, **overrides})


def shared_options(*names: str, **overrides: dict):
    """Decorator: the named OPTIONS, in the order given; overrides={name: {setting: value}}."""
    def decorate(fn):
        for name in reversed(names):
            fn = option(name, **overrides.get(name, {}))(fn)
        return fn
    return decorate


def run_options(fn):
    """Every option of `run` (`evaluate` takes some of them with shared_options)."""
    return shared_options(*RUN_OPTIONS)(fn)


# ---- the group ---------------------------------------------------------------------------
class _Group(click.Group):
    """Subcommands that live beside the code they drive are imported when used (click's lazy loading).

    So `stam-label --version` and `stam-label run` do not import them, and their modules may
    import shared options from here.
    """

    LAZY = {"export": "jobs.export:export_command", "evaluate": "jobs.evaluate:evaluate_command",
            "inspect": "jobs.report:inspect_command", "migrate": "jobs.maintenance:migrate_command",
            "optimize": "jobs.maintenance:optimize_command"}

    def list_commands(self, ctx):
        return sorted(set(super().list_commands(ctx)) | set(self.LAZY))

    def get_command(self, ctx, name):
        if name not in self.commands and name in self.LAZY:
            module, attr = self.LAZY[name].split(":")
            self.add_command(getattr(importlib.import_module(module), attr), name)
        return super().get_command(ctx, name)

    def add_command(self, cmd, name=None):
        super().add_command(adopt(cmd), name)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="stam-label", prog_name="stam-label", message="%(prog)s %(version)s")
@click.option("-v", "--verbose", is_flag=True, help="Log debug details (also accepted after the command).")
def main(verbose: bool) -> None:
    """Label video archives with the STAM action-recognition model on Ray.

    \b
    Exit codes: 0 ok; 1 more than --max-error-rate of the videos (or all) failed;
    2 bad usage; 3 cannot start (input, output, weights, Ray); 4 failed mid-run;
    130 interrupted.
    """
    logs.configure(verbose)


def _config(input_uri: str, output_uri: str, **opts):
    from jobs.pipeline import JobConfig

    if opts.get("stride_s") is not None and opts.get("window_s") is None:
        raise click.UsageError("--stride-seconds needs --window-seconds")
    opts["extensions"] = tuple("." + e.strip().lstrip(".").lower() for e in opts["extensions"].split(",") if e.strip())
    return JobConfig(input_uri=input_uri, output_uri=output_uri, **opts)


@main.command()
@click.argument("input_uri", metavar="INPUT")
@click.argument("output_uri", metavar="OUTPUT")
@config_option
@run_options
def run(input_uri: str, output_uri: str, **opts) -> None:
    """Label every video under INPUT and commit the rows to OUTPUT.

    INPUT is a local folder, an s3://bucket/prefix (both recursive) or a manifest file
    (.txt one URI per line; .csv/.parquet with a video_uri column). OUTPUT is a local folder
    or an s3:// prefix. Videos already labelled with the same weights are skipped.
    """
    from jobs.pipeline import run_job

    config = _config(input_uri, output_uri, **opts)
    summary = run_job(config)
    if opts.get("dry_run"):
        print_plan(summary)
        return
    print_summary(summary)
    check_error_rate(summary, opts["max_error_rate"])


def check_error_rate(summary, max_error_rate: float) -> None:
    """Exit 1 when every labelled video failed, or more than max_error_rate of them."""
    where = f"the rows are committed in {summary.output_uri}"
    if summary.processed and not summary.ok:
        raise Failure(f"all {summary.processed} labelled videos failed; {where}", EXIT_TOO_MANY_ERRORS)
    if summary.error_rate > max_error_rate:
        raise Failure(f"{summary.error} of {summary.processed} videos failed ({summary.error_rate:.1%}), "
                      f"above --max-error-rate {max_error_rate:.1%}; {where}", EXIT_TOO_MANY_ERRORS)


@main.command()
@click.option("--videos", type=click.IntRange(1), default=6, show_default=True, help="Sample videos to generate.")
@click.option("--weights", default="stam_16", show_default=True, help="Weights to try first.")
def demo(videos: int, weights: str) -> None:
    """Label generated sample videos S3 -> S3 on a local S3 server and a local Ray.

    Needs the demo extra (its local S3 server): pip install 'stam-label[demo]'.
    """
    from jobs.demo import run_demo

    sys.exit(run_demo(num_videos=videos, weights=weights))

