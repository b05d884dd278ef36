"""Options shared between commands, defined once; --config FILE; -v/--verbose.

``OPTIONS`` holds every option of `run`, each named by its JobConfig field; their defaults are
JobConfig's (``default_of``), the single source of defaults for run, evaluate and the demo.
``run_options`` puts all of them on a command, ``shared_options(*names)`` some (`evaluate`),
``option(name, **overrides)`` one with some settings changed (the demo's --weights).
"""
from __future__ import annotations

import dataclasses
import difflib

import click

from jobs import logs
from jobs.cli.errors import one_line
from jobs.config import JobConfig

_DEFAULTS = {f.name: f.default for f in dataclasses.fields(JobConfig) if f.default is not dataclasses.MISSING}


def default_of(name: str):
    """JobConfig's default for the field ``name``."""
    return _DEFAULTS[name]


# ---- options shared between commands -----------------------------------------------------
OPTIONS: dict[str, tuple[tuple[str, ...], dict]] = {
    "weights": (("--weights",), dict(
        default=default_of("weights"), show_default=True,
        help="Release name (stam_8/16/32/64), local path, http(s) or s3:// URL of a checkpoint.")),
    "weights_sha256": (("--weights-sha256",), dict(
        default=default_of("weights_sha256"), help="Refuse weights whose sha256 differs.")),
    "batch_size": (("--batch-size",), dict(
        default=default_of("batch_size"), show_default=True, type=click.IntRange(1),
        help="Clips per model forward pass (raise it on GPUs: 32-128).")),
    "top_k": (("--top-k",), dict(
        default=default_of("top_k"), show_default=True, type=click.IntRange(1), help="Labels kept per row.")),
    "precision": (("--precision",), dict(
        type=click.Choice(["auto", "fp32", "bf16", "fp16"]), default=default_of("precision"), show_default=True,
        help="Model precision; auto picks bf16/fp16 where the device runs it fast.")),
    "decode_workers": (("--decode-workers",), dict(
        type=click.IntRange(1), default=default_of("decode_workers"),
        help="CPU cores to decode on, at most (default: every CPU Ray can give them); "
             "two decode tasks run per core.")),
    "model_workers": (("--model-workers",), dict(
        type=click.IntRange(1), default=default_of("model_workers"), show_default=True,
        help="Model actors (one per GPU on a GPU cluster).")),
    "gpus_per_worker": (("--gpus-per-worker",), dict(
        type=float, default=default_of("gpus_per_worker"), show_default=True,
        help="GPUs per model actor when the cluster has GPUs (fractions share a GPU).")),
    "model_threads": (("--model-threads",), dict(
        type=click.IntRange(1), default=default_of("model_threads"),
        help="CPU inference threads per model actor without a GPU (default: all cores).")),
    "address": (("--address",), dict(
        envvar="RAY_ADDRESS", default=default_of("address"),
        help="Ray cluster to join (also RAY_ADDRESS); default: start a local Ray.")),
    "limit": (("--limit",), dict(
        type=click.IntRange(1), default=default_of("limit"),
        help="Label at most N videos: the first N, by video URI, of those still to label.")),
    "max_error_rate": (("--max-error-rate",), dict(
        type=click.FloatRange(0, 1), default=default_of("max_error_rate"), show_default=True,
        help="Exit 1 when more than this share of the labelled videos failed (always when all of them did).")),
    "relabel": (("--relabel",), dict(
        is_flag=True, default=default_of("relabel"), help="Label every video again, even those already labelled.")),
    "decode_timeout": (("--decode-timeout",), dict(
        type=float, default=default_of("decode_timeout"), show_default=True,
        help="Seconds one video may take to decode before it becomes an error row.")),
    "extensions": (("--extensions",), dict(
        default=",".join(e.lstrip(".") for e in default_of("extensions")), show_default=True,
        help="Video file extensions picked from folders and prefixes.")),
    "commit_every": (("--commit-every", "--rows-per-file", "commit_every"), dict(
        type=click.IntRange(1), default=default_of("commit_every"), show_default=True, metavar="ROWS",
        help="Commit the labelled rows every ROWS rows (also at most what a killed run loses). "
             "--rows-per-file is its old name, kept so existing scripts still work.")),
    "commit_interval_s": (("--commit-interval", "commit_interval_s"), dict(
        type=click.FloatRange(min=0, min_open=True), default=default_of("commit_interval_s"), show_default=True,
        metavar="SECONDS", help="... or every SECONDS since the last commit, whichever comes first.")),
    "commit_timeout_s": (("--commit-timeout", "commit_timeout_s"), dict(
        type=click.FloatRange(min=0, min_open=True), default=default_of("commit_timeout_s"), show_default=True,
        metavar="SECONDS",
        help="Retry a failing commit (storage errors, conflicts) with backoff this long before the run fails (exit 4).")),
    "labels_file": (("--labels", "labels_file"), dict(
        type=click.Path(exists=True, dir_okay=False), default=default_of("labels_file"),
        help="Class names, one per line, for checkpoints fine-tuned on other classes.")),
    "window_s": (("--window-seconds", "window_s"), dict(
        type=click.FloatRange(min=0, min_open=True), default=default_of("window_s"),
        help="Label each window of W seconds (plus a video-level row, segment_index -1).")),
    "stride_s": (("--stride-seconds", "stride_s"), dict(
        type=click.FloatRange(min=0, min_open=True), default=default_of("stride_s"),
        help="Seconds between window starts (default: the window length).")),
    "max_windows": (("--max-windows",), dict(
        type=click.IntRange(1), default=default_of("max_windows"), show_default=True,
        help="With --window-seconds: a video that would make more windows is one error row (too_long).")),
    "embeddings": (("--embeddings",), dict(
        is_flag=True, default=default_of("embeddings"), help="Add the video embedding column (the model's width: 768 for stam_16, 96 for stam_tiny).")),
    "probs": (("--probs",), dict(
        is_flag=True, default=default_of("probs"), help="Add the full probability vector column.")),
    "max_pixels": (("--max-pixels",), dict(
        type=click.IntRange(1), default=default_of("max_pixels"),
        show_default=f"8192x4320 = {default_of('max_pixels')}",
        help="Videos with more pixels per frame are error rows (too_large), read from the header only.")),
    "resize": (("--resize",), dict(
        type=click.Choice(["exact", "fast"]), default=default_of("resize"), show_default=True,
        help="exact: the official PIL resize; fast: scale in YUV with swscale (cheaper, not bit-exact; "
             "see docs/decoding.md).")),
    "allow_local_paths": (("--allow-local-paths",), dict(
        is_flag=True, default=default_of("allow_local_paths"),
        help="Allow local paths in a manifest stored in S3 (refused by default).")),
    "dry_run": (("--dry-run",), dict(
        is_flag=True, default=default_of("dry_run"),
        help="List and plan only: how many videos would be labelled, the first ones, an estimate "
             "of the decode CPU time; nothing is written.")),
    "progress_interval_s": (("--progress-interval", "progress_interval_s"), dict(
        type=click.FloatRange(min=0), default=default_of("progress_interval_s"), show_default=True,
        metavar="SECONDS",
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


# ---- --config FILE -----------------------------------------------------------------------
NOT_CONFIGURABLE = {"help", "config", "version"}


def config_key(option: click.Option) -> str:
    """An option's key in a --config file: its (first) long name with underscores (--batch-size: batch_size)."""
    longs = [o for o in option.opts if o.startswith("--")] or option.opts
    return longs[0].lstrip("-").replace("-", "_")


def _load_config(ctx: click.Context, param: click.Parameter, path: str | None) -> None:
    if not path:
        return
    import yaml  # only when a file is given: `stam-label --version` stays fast

    def bad(message: str):
        return click.BadParameter(f"{path}: {message}", ctx=ctx, param=param)

    try:
        with open(path, encoding="utf-8") as f:
            data = yaml.safe_load(f)
    except OSError as exc:
        raise bad(f"cannot read it ({exc.strerror or exc})") from None
    except yaml.YAMLError as exc:
        raise bad(f"not valid YAML ({one_line(exc)})") from None
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


# ---- -v/--verbose, before or after the subcommand ----------------------------------------
def _verbose_callback(ctx: click.Context, param: click.Parameter, value: bool) -> None:
    if value:  # -v after the subcommand; never turns off a -v given before it
        logs.configure(True)


def verbose_option() -> click.Option:
    return click.Option(["-v", "--verbose"], is_flag=True, expose_value=False, is_eager=True,
                        callback=_verbose_callback, help="Log debug details (also accepted before the command).")
