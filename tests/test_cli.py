"""The command line without Ray: version, -v, exit codes, --config, help texts, the demo's extra,
progress lines, quiet logs. run_job is replaced by fakes, so every test here takes well under a second
(the version and import checks start one short process each)."""
from __future__ import annotations

import dataclasses
import importlib.metadata
import io
import logging
import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
from click.testing import CliRunner

from jobs import logs
from jobs.cli import main
from jobs.cli import options as cli_options
from jobs.cli import run as cli_run
from jobs.errors import JobError, JobFailed, JobInterrupted
from jobs.progress import Progress, format_duration
from jobs.storage import StorageError

VENV_BIN = Path(sys.executable).parent
REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def restore_logging():
    """logs.configure changes the root logger; put it back for the other tests."""
    root = logging.getLogger()
    level, handlers = root.level, list(root.handlers)
    secret = {name: logging.getLogger(name).level for name in logs.SECRET_LOGGERS}
    state = dict(logs._state)  # verbose, and whether the CLI configured logging (what a run's stderr does)
    yield
    root.setLevel(level)
    root.handlers[:] = handlers
    for name, lvl in secret.items():
        logging.getLogger(name).setLevel(lvl)
    logs._state.update(state)


def summary(ok=3, error=1, skipped=0, **kw):
    from jobs.pipeline import RunSummary

    return RunSummary("r1", "/tmp/out", listed=ok + error + skipped, skipped=skipped, ok=ok, error=error,
                      elapsed_s=2.0, **kw)


@pytest.fixture
def fake_job(monkeypatch):
    """run_job records the JobConfig's fields and returns (or raises) what the test sets;
    ``calls["override"]`` changes fields of the JobConfig the command goes on with."""
    import jobs.pipeline
    import jobs.preflight
    from jobs.config import JobConfig

    calls = {"result": summary(), "override": {}}

    def fake_config(**kw):
        calls["config"] = kw
        return JobConfig(**{**kw, **calls["override"]})

    def fake_run_job(config):
        calls["verbose_during_run"] = logs.is_verbose()
        result = calls["result"]
        if isinstance(result, BaseException):
            raise result
        return result

    monkeypatch.setattr(cli_run, "JobConfig", fake_config)
    monkeypatch.setattr(jobs.pipeline, "run_job", fake_run_job)
    monkeypatch.setattr(jobs.preflight, "check", lambda *a, **kw: None)  # "in" and "out" need not exist
    return calls


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


# ---- version and -v ------------------------------------------------------------------------
def test_version():
    out = subprocess.run([str(VENV_BIN / "stam-label"), "--version"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == f"stam-label {importlib.metadata.version('stam-label')}"


@pytest.mark.parametrize("args", [["-v", "run", "in", "out"], ["run", "-v", "in", "out"],
                                  ["run", "in", "out", "--verbose"]])
def test_verbose_before_or_after_the_subcommand(fake_job, args):
    result = invoke(*args)
    assert result.exit_code == 0, result.output
    assert fake_job["verbose_during_run"] is True
    assert logging.getLogger().level == logging.DEBUG
    for name in logs.SECRET_LOGGERS:  # request signatures: never at debug
        assert logging.getLogger(name).getEffectiveLevel() == logging.WARNING


def test_not_verbose_by_default(fake_job):
    assert invoke("run", "in", "out").exit_code == 0
    assert fake_job["verbose_during_run"] is False and logging.getLogger().level == logging.INFO


def test_every_subcommand_takes_verbose():
    from jobs.cli.export import export_command

    for name in ("run", "demo", "evaluate", "export", "inspect"):
        result = invoke(name, "--help")
        assert result.exit_code == 0 and "--verbose" in result.output, name
    assert not any(p.name == "verbose" for p in export_command.params)  # its module's object is untouched


# ---- exit codes -----------------------------------------------------------------------------
@pytest.mark.parametrize("error, code", [
    (JobError("weights 'x.pth': no such file"), 3),
    (StorageError("/nope: input does not exist"), 3),
    (JobFailed("commits to s3://b/out kept failing after 5 retries"), 4),
    (JobInterrupted("interrupted by SIGTERM; 40 videos committed"), 130),
    (KeyboardInterrupt(), 130),
])
def test_errors_are_one_line_with_their_exit_code(fake_job, error, code):
    fake_job["result"] = error
    result = invoke("run", "in", "out")
    assert result.exit_code == code, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    assert "Traceback" not in result.output
    if str(error):
        assert str(error) in lines[0]


def test_unexpected_errors_exit_4_without_traceback(fake_job):
    fake_job["result"] = RuntimeError("boom\nsecond line")
    result = invoke("run", "in", "out")
    assert result.exit_code == 4 and "Traceback" not in result.output
    assert result.stderr.strip() == "Error: RuntimeError: boom second line (unexpected; -v logs the traceback)"


def test_usage_errors_exit_2(fake_job):
    assert invoke("run", "in").exit_code == 2
    assert invoke("run", "in", "out", "--stride-seconds", "2").exit_code == 2
    assert invoke("run", "in", "out", "--max-error-rate", "2").exit_code == 2


def test_dry_run_prints_the_plan(fake_job):
    fake_job["result"] = summary(ok=0, error=0, skipped=3, dry_run=True, total=12, first_uris=["s3://a/1.mp4"],
                                 estimated_decode_cpu_h=0.25)
    result = invoke("run", "in", "out", "--dry-run")
    assert result.exit_code == 0, result.output
    assert fake_job["config"]["dry_run"] is True
    assert "dry run: 3 videos listed, 3 already labelled, 12 to label (about 15 CPU-minutes" in result.stdout
    assert "  s3://a/1.mp4\n  ... and 11 more" in result.stdout


def test_summary_shows_the_error_rate_and_exit_0(fake_job):
    fake_job["result"] = summary(ok=3, error=1, skipped=2)
    result = invoke("run", "in", "out")
    assert result.exit_code == 0, result.output
    assert "3 ok, 1 error, 2 skipped (of 6 listed)" in result.stdout
    assert "in 2s (2.0 s of wall time since the run started)" in result.stdout
    assert "error rate: 25.0% (1 of 4 labelled videos)" in result.stdout
    assert "output: /tmp/out (0 commits)" in result.stdout


def test_max_error_rate_default_is_half(fake_job):
    assert invoke("run", "in", "out").exit_code == 0
    assert fake_job["config"]["max_error_rate"] == 0.5
    fake_job["result"] = summary(ok=1, error=2)
    result = invoke("run", "in", "out")
    assert result.exit_code == 1
    assert "2 of 3 videos failed (66.7%), above --max-error-rate 50.0%" in result.stderr
    assert "2 error" in result.stdout  # the summary is still printed


def test_the_error_rate_is_checked_against_the_config(fake_job):
    """The threshold is the JobConfig's (what the run recorded), not a second reading of the option."""
    fake_job["result"] = summary(ok=1, error=2)
    fake_job["override"] = {"max_error_rate": 0.9}
    assert invoke("run", "in", "out", "--max-error-rate", "0.1").exit_code == 0
    fake_job["override"] = {"max_error_rate": 0.5}
    result = invoke("run", "in", "out", "--max-error-rate", "0.9")
    assert result.exit_code == 1 and "above --max-error-rate 50.0%" in result.stderr


def test_all_failed_exits_1_whatever_the_max_error_rate(fake_job):
    fake_job["result"] = summary(ok=0, error=2)
    result = invoke("run", "in", "out", "--max-error-rate", "1")
    assert result.exit_code == 1 and "all 2 labelled videos failed" in result.stderr
    fake_job["result"] = summary(ok=0, error=0, skipped=5)  # nothing to do is fine
    assert invoke("run", "in", "out").exit_code == 0


def test_evaluate_exit_codes(tmp_path):
    from jobs.cli.evaluate import evaluate_command

    unknown = tmp_path / "unknown.csv"
    unknown.write_text("video_uri,label\na.mp4,flying a spaceship\n")
    result = CliRunner().invoke(evaluate_command, [str(unknown), "--weights", "w.pth"])
    assert result.exit_code == 3 and result.stderr.startswith("Error: ") and "flying a spaceship" in result.stderr


# ---- --config -------------------------------------------------------------------------------
def test_config_file_values_and_command_line_wins(fake_job, tmp_path):
    config = tmp_path / "nightly.yaml"
    config.write_text("batch_size: 32\nwindow_seconds: 10\nextensions: [mp4, MKV]\nrelabel: true\n"
                      "max_error_rate: 0.3\nprogress_interval: 60\nlabels: null\n")
    result = invoke("run", "in", "out", "--config", config, "--batch-size", "4")
    assert result.exit_code == 0, result.output
    got = fake_job["config"]
    assert got["batch_size"] == 4  # the command line wins
    assert got["window_s"] == 10.0 and got["relabel"] is True and got["max_error_rate"] == 0.3
    assert got["extensions"] == (".mp4", ".mkv") and got["progress_interval_s"] == 60.0
    assert got["labels_file"] is None and got["top_k"] == 5  # defaults where the file says nothing

    config.write_text("rows_per_file: 10\n")  # an option's other name is no key
    assert invoke("run", "in", "out", "--config", config).exit_code == 2
    config.write_text("commit_every: 10\n")
    assert invoke("run", "in", "out", "--config", config, "--rows-per-file", "5").exit_code == 0
    assert fake_job["config"]["commit_every"] == 5


def test_config_file_errors_exit_2(fake_job, tmp_path):
    config = tmp_path / "bad.yaml"
    config.write_text("batch_size: 32\nbatch_sise: 4\n")
    result = invoke("run", "in", "out", "--config", config)
    assert result.exit_code == 2
    assert "unknown key 'batch_sise'" in result.stderr and str(config) in result.stderr
    assert "did you mean 'batch_size'" in result.stderr

    config.write_text("- batch_size\n")
    result = invoke("run", "in", "out", "--config", config)
    assert result.exit_code == 2 and "expected a mapping" in result.stderr

    config.write_text("batch_size: many\n")
    result = invoke("run", "in", "out", "--config", config)
    assert result.exit_code == 2 and "batch-size" in result.stderr

    assert invoke("run", "in", "out", "--config", tmp_path / "absent.yaml").exit_code == 2
    assert "config" not in fake_job  # nothing ran


def test_config_file_for_evaluate(monkeypatch, tmp_path):
    import jobs.cli.evaluate
    import jobs.tools.evaluate

    seen = {}

    def fake_evaluate(manifest, opts, video_root=None, output_uri=None):
        seen.update(opts, manifest=manifest, video_root=video_root)
        return jobs.tools.evaluate.Evaluation(count=1, evaluated=1, top1=100.0, top5=100.0, top1_all=100.0,
                                        top5_all=100.0, mean_class_accuracy=100.0)

    monkeypatch.setattr(jobs.cli.evaluate, "evaluate", fake_evaluate)
    config = tmp_path / "eval.yaml"
    config.write_text("weights: stam_8\nbatch_size: 64\nvideo_root: s3://k400/val\ndecode_workers: 3\n")
    result = invoke("evaluate", "m.csv", "--config", config)
    assert result.exit_code == 0, result.output  # --weights (required) came from the file
    assert seen["weights"] == "stam_8" and seen["batch_size"] == 64 and seen["decode_workers"] == 3
    assert seen["video_root"] == "s3://k400/val"

    config.write_text("weights: stam_8\nwindow_seconds: 10\n")  # a run option evaluate does not have
    result = invoke("evaluate", "m.csv", "--config", config)
    assert result.exit_code == 2 and "unknown key 'window_seconds'" in result.stderr


# ---- help texts and shared options ----------------------------------------------------------
def test_evaluate_shares_runs_option_definitions():
    import click

    from jobs.cli.evaluate import evaluate_command

    run = {p.name: p for p in main.commands["run"].params if isinstance(p, click.Option)}
    shared = [p for p in evaluate_command.params if p.name in run and p.name not in ("verbose", "help")]
    assert len(shared) >= 11
    for param in shared:
        ours = run[param.name]
        assert (param.opts, param.type.__class__) == (ours.opts, ours.type.__class__), param.name
        if param.name != "weights":  # required there, with no default
            assert (param.help, param.default) == (ours.help, ours.default), param.name
    decode = next(p for p in evaluate_command.params if p.name == "decode_workers")
    assert decode.help.startswith("CPU cores to decode on, at most") and "two decode tasks" in decode.help
    assert "shared by `run` and `demo`" not in (cli_options.run_options.__doc__ or "")


def test_every_run_option_is_a_jobconfig_field_with_its_default():
    import click

    from jobs.config import JobConfig

    fields = {f.name: f.default for f in dataclasses.fields(JobConfig)}
    assert set(cli_options.RUN_OPTIONS) <= set(fields), set(cli_options.RUN_OPTIONS) - set(fields)
    run = main.commands["run"]
    ctx = run.make_context("run", ["in", "out"])
    config = cli_run.job_config(**ctx.params)  # the real JobConfig, from the command line's defaults
    assert config == JobConfig("in", "out", **{k: fields[k] for k in cli_options.RUN_OPTIONS if k != "address"},
                               address=config.address)  # RAY_ADDRESS may be set
    assert isinstance(run.params[0], click.Argument)


# ---- the demo's extra -----------------------------------------------------------------------
def test_demo_without_moto_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "moto", None)  # import moto -> ImportError
    monkeypatch.setitem(sys.modules, "moto.server", None)
    result = invoke("demo")
    assert result.exit_code == 3, result.output
    assert result.stderr.strip().splitlines() == [
        "Error: the demo needs its local S3 server (moto): pip install 'stam-label[demo]'"]


def test_moto_is_imported_only_by_the_demo():
    code = ("import sys, jobs.cli, jobs.cli.demo, jobs.cli.evaluate, jobs.tools.demo, jobs.tools.demo_s3; "
            "loaded = sorted(m for m in sys.modules if m == 'moto' or m.startswith('moto.')); "
            "sys.exit(str(loaded) if loaded else 0)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=60)
    assert out.returncode == 0, out.stderr


# ---- progress -------------------------------------------------------------------------------
class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


class Lines(io.StringIO):
    """A non-TTY stream that can wait for the background thread's lines."""

    def wait_for(self, text: str, timeout: float = 10.0) -> str:
        """The last line, once one with ``text`` was written."""
        import time

        deadline = time.time() + timeout
        while time.time() < deadline:
            lines = self.getvalue().splitlines()
            if any(text in line for line in lines):
                return lines[-1]
            time.sleep(0.01)
        raise AssertionError(f"no line with {text!r} in {self.getvalue()!r}")


def test_progress_lines_without_a_terminal():
    clock, stream = Clock(), Lines()
    with Progress(1000, interval_s=0.05, stream=stream, clock=clock) as progress:
        clock.now += 40.0
        progress.update(ok=118, error=2)
        assert stream.wait_for("120/1000") == "progress: 120/1000 videos (118 ok, 2 error), 3.0 videos/s, ETA 4m53s"
        clock.now += 10.0
        progress.update(ok=30)
        progress.update(error=1)
        assert stream.wait_for("151/1000") == "progress: 151/1000 videos (148 ok, 3 error), 3.0 videos/s, ETA 4m41s"
        assert (progress.done, progress.ok, progress.error) == (151, 148, 3)
    last = stream.getvalue().splitlines()[-1]
    assert last == "progress: done, 151/1000 videos (148 ok, 3 error) in 50s, 3.0 videos/s"
    count = len(stream.getvalue().splitlines())
    progress.close()  # idempotent, and the thread is gone
    assert len(stream.getvalue().splitlines()) == count


def test_progress_interval_and_unknown_total():
    clock, stream = Clock(), Lines()
    progress = Progress(None, interval_s=3600, stream=stream, clock=clock)
    progress.update(ok=5)
    clock.now += 2
    assert stream.getvalue() == ""  # nothing before the interval
    assert progress.line() == "progress: 5 videos (5 ok, 0 error), 2.5 videos/s"
    progress.close()
    assert stream.getvalue() == "progress: done, 5 videos (5 ok, 0 error) in 2s, 2.5 videos/s\n"

    none_yet = Progress(10, interval_s=3600, stream=Lines(), clock=clock)
    assert none_yet.line() == "progress: 0/10 videos, starting workers, loading the model (0s into the run)"
    none_yet.close()


def test_progress_says_stopped_when_the_run_fails():
    clock, stream = Clock(), Lines()
    with pytest.raises(KeyboardInterrupt), Progress(10, interval_s=3600, stream=stream, clock=clock) as progress:
        progress.update(ok=4)
        clock.now += 8
        raise KeyboardInterrupt
    assert stream.getvalue() == "progress: stopped, 4/10 videos (4 ok, 0 error) after 8s, 0.5 videos/s\n"


def test_progress_disabled_writes_nothing():
    for kwargs in ({"enabled": False}, {"interval_s": 0}):
        stream = Lines()
        with Progress(10, stream=stream, **kwargs) as progress:
            progress.update(ok=10)
        assert stream.getvalue() == "" and progress.done == 10


def test_progress_bar_in_a_terminal():
    class Tty(io.StringIO):
        def isatty(self):
            return True

    stream = Tty()
    with Progress(10, interval_s=0.01, stream=stream) as progress:
        progress.update(ok=3, error=1)
    text = stream.getvalue()
    assert "4/10" in text and "videos/s" in text and "ok=3" in text and "error=1" in text
    assert "progress:" not in text  # the bar, not the plain lines


def test_progress_in_a_terminal_without_a_size_is_plain_lines(monkeypatch):
    """A pty under `script` or a CI console: isatty, but no columns; tqdm would print nothing."""
    import jobs.progress

    class SizelessTty(Lines):
        def isatty(self):
            return True

        def fileno(self):
            return 99

    monkeypatch.setattr(jobs.progress.os, "get_terminal_size", lambda fd: os.terminal_size((0, 0)))
    clock, stream = Clock(), SizelessTty()
    with Progress(2, interval_s=0.05, stream=stream, clock=clock) as progress:
        assert stream.wait_for("starting workers") == \
            "progress: 0/2 videos, starting workers, loading the model (0s into the run)"
        clock.now += 4
        progress.update(ok=2)
    assert stream.getvalue().splitlines()[-1] == "progress: done, 2/2 videos (2 ok, 0 error) in 4s, 0.5 videos/s"


def test_progress_elapsed_is_the_runs_wall_time():
    """The final line counts from the run's start, as the summary does."""
    clock, stream = Clock(), Lines()
    clock.now = 100.0
    with Progress(10, interval_s=3600, stream=stream, clock=clock, started=70.0) as progress:
        clock.now += 5
        progress.update(ok=10)
    assert stream.getvalue() == "progress: done, 10/10 videos (10 ok, 0 error) in 35s, 0.3 videos/s\n"


def test_progress_bar_says_what_happens_before_the_first_video():
    class Tty(io.StringIO):
        def isatty(self):
            return True

    stream = Tty()
    progress = Progress(10, interval_s=0.01, stream=stream)
    assert "starting workers, loading the model" in stream.getvalue()
    progress.update(ok=1)
    progress.close()
    assert "labelling" in stream.getvalue()


def test_format_duration():
    assert [format_duration(s) for s in (0, 12.4, 284, 3725)] == ["0s", "12s", "4m44s", "1h02m"]


# ---- quiet logs -----------------------------------------------------------------------------
@pytest.fixture
def ray_data_state():
    import ray.data

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # Ray's own, when the context is first made
        ctx = ray.data.DataContext.get_current()
    saved = (ctx.enable_progress_bars, ctx.enable_operator_progress_bars, ctx.print_on_execution_start)
    handlers = [(h, h.level) for h in logging.getLogger("ray.data").handlers]
    yield ctx
    ctx.enable_progress_bars, ctx.enable_operator_progress_bars, ctx.print_on_execution_start = saved
    for handler, level in handlers:
        handler.setLevel(level)


def test_quiet_ray(ray_data_state):
    ctx = ray_data_state
    logs.quiet_ray(verbose=False)
    assert not ctx.enable_progress_bars and not ctx.enable_operator_progress_bars and not ctx.print_on_execution_start
    console = [h for h in logging.getLogger("ray.data").handlers if logs._is_console(h)]
    assert console and all(h.level >= logging.ERROR for h in console)
    assert any(not logs._is_console(h) for h in logging.getLogger("ray.data").handlers)  # the file keeps all


def test_quiet_ray_under_verbose_changes_nothing(ray_data_state):
    ctx = ray_data_state
    logs.configure(True)
    before = (ctx.enable_progress_bars, ctx.enable_operator_progress_bars)
    levels = [h.level for h in logging.getLogger("ray.data").handlers]
    logs.quiet_ray()  # verbose from the CLI's -v
    assert (ctx.enable_progress_bars, ctx.enable_operator_progress_bars) == before
    assert [h.level for h in logging.getLogger("ray.data").handlers] == levels


def test_jobs_and_stam_core_name_no_private_ray_module():
    """Ray's public API only: no ray._private / ray.*._internal module or logger names."""
    root = Path(__file__).parent.parent
    offenders = [f"{path.relative_to(root)}:{n}" for package in ("jobs", "stam_core")
                 for path in sorted((root / package).rglob("*.py"))
                 for n, line in enumerate(path.read_text().splitlines(), 1)
                 if "ray._private" in line or "_internal" in line and "ray" in line]
    assert not offenders, offenders


def test_counts_of_one_are_singular(fake_job):
    fake_job["result"] = summary(ok=0, error=1, skipped=0, commits=1)
    result = invoke("run", "in", "out", "--max-error-rate", "1")
    assert "(1 of 1 labelled video)" in result.stdout
    assert "(1 commit)" in result.stdout


@pytest.mark.parametrize("hours, text", [(0.0, "0 CPU-seconds"), (0.2 / 3600, "under a CPU-second"),
                                         (40 / 3600, "40 CPU-seconds"),
                                         (0.25, "15 CPU-minutes"), (3.46, "3.5 CPU-hours")])
def test_cpu_time_wording(hours, text):
    from jobs.text import cpu_time, plural

    assert cpu_time(hours) == text
    assert cpu_time(hours, estimate=True) == (text if text.startswith("under") else f"about {text}")
    assert (plural(1, "window"), plural(2, "window"), plural(0, "class", "classes")) == ("1 window", "2 windows",
                                                                                          "0 classes")


def test_dry_run_of_a_few_videos_is_not_zero_hours(fake_job):
    fake_job["result"] = summary(ok=0, error=0, skipped=0, dry_run=True, total=1, first_uris=["a.mp4"],
                                 estimated_decode_cpu_h=1 / 3600)
    assert "0 videos listed, 0 already labelled, 1 to label (about 1 CPU-second of decoding)" in invoke(
        "run", "in", "out", "--dry-run").stdout


def test_option_help_explains_defaults_and_old_names():
    text = " ".join(invoke("run", "--help").stdout.split())
    assert "8192x4320 = 35389440" in text
    assert "is its old name, kept so existing scripts still work" in text
