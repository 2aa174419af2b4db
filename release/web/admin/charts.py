"""Bar charts drawn on the server as inline SVG: no script, no inline styles (the CSP allows
neither), colours from classes in static/css/app.css with presentation attributes as fallback.
"""

from __future__ import annotations

from collections.abc import Sequence

from markupsafe import Markup, escape

WIDTH = 600
HEIGHT = 170
LEFT = 36  # room for the y-axis labels
RIGHT = 6
TOP = 10
BOTTOM = 22  # room for the first and last day under the axis
PLOT_WIDTH = WIDTH - LEFT - RIGHT
PLOT_HEIGHT = HEIGHT - TOP - BOTTOM


def _num(value: float) -> str:
    """Coordinates with at most two decimals, without trailing zeros."""
    text = f"{value:.2f}".rstrip("0").rstrip(".")
    return text if text != "-0" else "0"


def bar_chart(title: str, labels: Sequence[str], values: Sequence[int], *, key: str = "") -> Markup:
    """One bar per label; bar heights are proportional to the values (the largest value fills
    the plot height; all zero draws zero-height bars). The chart is an image to assistive
    technology, named by its title and a summary; the page shows the numbers as a table too.
    """
    if len(labels) != len(values):
        raise ValueError("one value per label")
    if any(v < 0 for v in values):
        raise ValueError("counts cannot be negative")
    peak = max(values, default=0)
    total = sum(values)
    summary = f"{title}: {total} in total"
    if labels:
        summary += f" from {labels[0]} to {labels[-1]}, at most {peak} on one day"
    slot = PLOT_WIDTH / max(len(values), 1)
    gap = min(2.0, slot * 0.2)
    baseline = TOP + PLOT_HEIGHT
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart chart-{escape(key)}" '
        f'viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="{escape(summary)}" '
        f'preserveAspectRatio="xMidYMid meet" data-peak="{peak}">',
        f"<title>{escape(summary)}</title>",
        # Grid and y-axis: the baseline (0) and the top (the peak).
        f'<line class="chart-axis" x1="{LEFT}" y1="{baseline}" x2="{WIDTH - RIGHT}" y2="{baseline}" '
        'stroke="#adb5bd" stroke-width="1"/>',
        f'<line class="chart-grid" x1="{LEFT}" y1="{TOP}" x2="{WIDTH - RIGHT}" y2="{TOP}" '
        'stroke="#dee2e6" stroke-width="1" stroke-dasharray="3 3"/>',
        f'<text class="chart-label" x="{LEFT - 4}" y="{baseline}" text-anchor="end" '
        'dominant-baseline="middle" font-size="11" fill="#6c757d">0</text>',
        f'<text class="chart-label" x="{LEFT - 4}" y="{TOP}" text-anchor="end" '
        f'dominant-baseline="middle" font-size="11" fill="#6c757d">{peak}</text>',
    ]
    for i, (label, value) in enumerate(zip(labels, values, strict=True)):
        height = PLOT_HEIGHT * value / peak if peak else 0.0
        x = LEFT + i * slot + gap / 2
        parts.append(
            f'<rect class="chart-bar" x="{_num(x)}" y="{_num(baseline - height)}" width="{_num(slot - gap)}" '
            f'height="{_num(height)}" fill="#0d6efd" data-label="{escape(label)}" data-value="{value}">'
            f"<title>{escape(label)}: {value}</title></rect>"
        )
    if labels:
        y = HEIGHT - 6
        parts.append(f'<text class="chart-label" x="{LEFT}" y="{y}" font-size="11" fill="#6c757d">'
                     f"{escape(labels[0])}</text>")  # fmt: skip
        if len(labels) > 1:
            parts.append(f'<text class="chart-label" x="{WIDTH - RIGHT}" y="{y}" text-anchor="end" font-size="11" '
                         f'fill="#6c757d">{escape(labels[-1])}</text>')  # fmt: skip
    parts.append("</svg>")
    return Markup("".join(parts))  # noqa: S704 - every interpolated text is escaped above
