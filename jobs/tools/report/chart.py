"""The label-frequency chart: horizontal bars of the most frequent top-1 labels (matplotlib, Agg)."""
from __future__ import annotations

import collections
import io

from jobs.text import plural
from stam_core.storage import write_atomic

CHART_LABELS = 30  # bars in the chart; the rest are summed in a note
BAR_COLOUR = (74, 122, 181)
CHART_DPI = 100


def label_figure(labels: collections.Counter, top: int = CHART_LABELS):
    """Horizontal bars of the most frequent top-1 labels (a matplotlib Figure on the Agg canvas).

    Built without pyplot: nothing global changes (the caller's backend stays as it was) and the
    figure is freed with its last reference."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    items = labels.most_common(top)
    total = sum(labels.values())
    fig = Figure(figsize=(10, 1.6 + 0.32 * max(1, len(items))), dpi=CHART_DPI)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.set_title(f"Top-1 label frequencies ({plural(total, 'labelled video')}, {plural(len(labels), 'label')})")
    ax.set_xlabel("videos (top-1 label)")
    ax.set_ylabel("label")
    if items:
        positions = list(range(len(items)))
        bars = ax.barh(positions, [n for _, n in items], height=0.7, color=_hex(BAR_COLOUR), linewidth=0)
        ax.set_yticks(positions, [_clip(label, 40) for label, _ in items])
        ax.invert_yaxis()  # most frequent on top
        ax.bar_label(bars, padding=3)
        ax.set_xlim(0, items[0][1] * 1.12)  # room for the counts
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(axis="x", color="#e5e5e5")
        ax.set_axisbelow(True)
    else:
        ax.set_yticks([])
        ax.set_xticks([])
        ax.text(0.5, 0.5, "no labelled videos", transform=ax.transAxes, ha="center", va="center")
    rest = len(labels) - len(items)
    if rest > 0:
        others = total - sum(n for _, n in items)
        ax.set_xlabel(f"videos (top-1 label); {plural(rest, 'more label', 'more labels')} ({plural(others, 'video')}) not drawn")
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    fig.tight_layout()
    return fig


def plot_png(labels: collections.Counter, top: int = CHART_LABELS) -> bytes:
    buf = io.BytesIO()
    # No "Software" text chunk: the PNG carries the chart only.
    label_figure(labels, top).savefig(buf, format="png", metadata={"Software": None})
    return buf.getvalue()


def write_plot(labels: collections.Counter, path: str, top: int = CHART_LABELS) -> None:
    """The label-frequency chart alone, as a PNG."""
    write_atomic(path, plot_png(labels, top))


def _hex(rgb: tuple[int, int, int]) -> str:
    return "#" + "".join(f"{c:02x}" for c in rgb)


def _clip(text: str, n: int) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"
