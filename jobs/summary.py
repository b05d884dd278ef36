"""What a run prints at its end (and what --dry-run prints): shared by `run` and the demo."""
from __future__ import annotations

import click


def print_summary(summary) -> None:
    rate = summary.processed / summary.elapsed_s if summary.elapsed_s else 0.0
    click.echo("")
    click.echo(f"run {summary.run_id}: {summary.ok} ok, {summary.error} error, {summary.skipped} skipped "
               f"(of {summary.listed} listed) in {summary.elapsed_s:.1f} s, {rate:.2f} videos/s")
    if summary.processed:
        click.echo(f"error rate: {summary.error_rate:.1%} ({summary.error} of {summary.processed} labelled videos)")
    for kind, count in sorted(summary.error_kinds.items(), key=lambda kv: -kv[1])[:5]:
        click.echo(f"  {count:6d} x {kind}: e.g. {summary.error_examples.get(kind, '')[:160]}")
    totals = getattr(summary, "totals", {}) or {}
    if summary.processed and totals:
        hours = (totals.get("footage_s") or 0) / 3600
        per_hour = (f"; per hour of footage: {totals.get('decode_cpu_s', 0) / hours:.0f} decode CPU-s, "
                    f"{totals.get('model_s', 0) / hours:.0f} model s") if hours else ""
        click.echo(f"cost: decode {totals.get('decode_cpu_s', 0):.1f} CPU-s, model {totals.get('model_s', 0):.1f} s "
                   f"for {summary.processed} videos ({(totals.get('footage_s') or 0) / 60:.1f} min of footage){per_hour}")
    click.echo(f"output: {summary.output_uri} ({summary.commits} commits)")


def print_plan(summary) -> None:
    """What --dry-run found: nothing was labelled or written."""
    click.echo(f"dry run: {summary.listed} videos listed, {summary.skipped} already labelled, "
               f"{summary.total} to label (about {summary.estimated_decode_cpu_h:.2f} CPU-hours of decoding)")
    for uri in summary.first_uris:
        click.echo(f"  {uri}")
    if summary.total > len(summary.first_uris):
        click.echo(f"  ... and {summary.total - len(summary.first_uris)} more")
