"""The `stam-label` command: the ``main`` click group and its subcommands, one module each.

Exit codes (docs/usage.md): 0 ok; 1 more than --max-error-rate of the labelled videos
failed, or every one of them did; 2 bad usage (click's); 3 the run cannot start (input,
output, weights, Ray: ``jobs.errors.JobError``, ``jobs.storage.StorageError``); 4 it failed
mid-run (``jobs.errors.JobFailed``); 130 interrupted (``jobs.errors.JobInterrupted``, Ctrl-C).
Errors are one line, ``Error: ...``, on stderr, without a traceback (-v logs it): jobs.cli.errors.

Modules: ``options`` (the options shared between commands, with JobConfig's defaults;
--config FILE; -v), ``errors`` (errors to exit codes), ``run`` (with the summary it prints),
``demo``, ``export``, ``evaluate``, ``inspect``, ``maintenance`` (migrate, optimize), ``review`` (review,
import-reviews, diff). They import the tools they drive (jobs.pipeline, jobs.tools.*); nothing below imports them.
"""
from __future__ import annotations

import copy
import importlib

import click

from jobs import logs
from jobs.cli.errors import cli_errors
from jobs.cli.options import verbose_option
from jobs.cli.run import run_command


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


class _Group(click.Group):
    """Subcommands whose modules import heavy libraries (pyarrow's datasets, Delta, matplotlib) are
    imported when used (click's lazy loading), so `stam-label --version` and `stam-label run --help`
    stay fast. `run` itself imports Ray and torch only when it runs.
    """

    LAZY = {"demo": "jobs.cli.demo:demo_command", "evaluate": "jobs.cli.evaluate:evaluate_command",
            "export": "jobs.cli.export:export_command", "inspect": "jobs.cli.inspect:inspect_command",
            "migrate": "jobs.cli.maintenance:migrate_command", "optimize": "jobs.cli.maintenance:optimize_command",
            "review": "jobs.cli.review:review_command", "import-reviews": "jobs.cli.review:import_reviews_command",
            "diff": "jobs.cli.review:diff_command"}

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


main.add_command(run_command)
