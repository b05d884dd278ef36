"""`stam-label migrate` and `stam-label optimize`: label table maintenance (jobs.tools.maintenance)."""
from __future__ import annotations

import json

import click

from jobs.tools.maintenance import DEFAULT_RETENTION_HOURS, migrate, optimize


@click.command("migrate")
@click.argument("output_uri", metavar="OUTPUT")
def migrate_command(output_uri: str) -> None:
    """Convert a label table of the first layout (run_id=*/ folders) into a Delta table in place."""
    result = migrate(output_uri)
    click.echo(f"migrated {output_uri}: {result.current_rows} current rows (of {result.old_rows} in all runs) "
               f"as Delta version {result.version}; the old run_id=* folders are kept and ignored")


@click.command("optimize")
@click.argument("output_uri", metavar="OUTPUT")
@click.option("--retention-hours", type=click.IntRange(0), default=DEFAULT_RETENTION_HOURS, show_default=True,
              help="Keep files older versions need for this long (readers and time travel within it keep working).")
def optimize_command(output_uri: str, retention_hours: int) -> None:
    """Compact the label table's small files (sorted by video_uri) and vacuum old ones."""
    click.echo(json.dumps(optimize(output_uri, retention_hours)))
