"""Server-side SVG charts for the operators' delivery report: values in, accessible markup out.

No scripts, no external assets, no ``style`` attributes (only SVG presentation attributes), so the
output works under a strict Content-Security-Policy. Every label is escaped: labels come from SMTP
servers and recipient domains. ``role="img"`` with ``aria-labelledby`` pointing to <title> and <desc>.
"""
from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence

from markupsafe import Markup, escape

# Delivery statuses → colour; each has contrast >= 3:1 against white (WCAG 1.4.11), checked in tests.
SERIES_COLOURS: dict[str, str] = {
    "sent": "#2e7d32",  # green
    "deferred": "#b45309",  # amber
    "bounced": "#c62828",  # red
    "failed": "#6a1b9a",  # purple
    "uncertain": "#1565c0",  # blue
    "skipped": "#616161",  # grey
}
TEXT_COLOUR = "#1a1a1a"  # ~17:1 on white
AXIS_COLOUR = "#595959"
GRID_COLOUR = "#d9d9d9"
FONT_SIZE = 12
CHAR_WIDTH = 7.7  # generous advance of a 12px digit (DejaVu Sans: 7.6), for layout only
FONT_FAMILY = "system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif"


def _n(value: float) -> str:
    """A coordinate, rounded and without a trailing '.0'."""
    return f"{round(value, 2):g}"


def _text(x: float, y: float, content: str, anchor: str = "start", extra: str = "") -> str:
    return (
        f'<text x="{_n(x)}" y="{_n(y)}" fill="{TEXT_COLOUR}" font-size="{FONT_SIZE}" '
        f'text-anchor="{anchor}" dy="0.35em"{extra}>{escape(content)}</text>'
    )


def _open(id_prefix: str, width: float, height: float, title: str, desc: str) -> list[str]:
    p = escape(id_prefix)
    return [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{_n(width)}" height="{_n(height)}" '
        f'viewBox="0 0 {_n(width)} {_n(height)}" role="img" aria-labelledby="{p}-title {p}-desc" '
        f'font-family="{escape(FONT_FAMILY)}" font-size="{FONT_SIZE}">',
        f'<title id="{p}-title">{escape(title)}</title>',
        f'<desc id="{p}-desc">{escape(desc)}</desc>',
    ]


def _nice_step(maximum: int, ticks: int = 4) -> int:
    """An integer tick step of 1, 2 or 5 times a power of ten giving about ``ticks`` ticks."""
    raw = max(maximum / ticks, 1)
    power = 10 ** math.floor(math.log10(raw))
    return next(int(m * power) for m in (1, 2, 5, 10) if m * power >= raw)


def _em(char: str) -> float:
    """A generous guess of a character's advance in em (no font metrics on the server)."""
    if char in "ijlt.,:;|!'()[] fr":
        return 0.4
    if char in "mwMW@%…":
        return 1.0
    return 0.75 if char.isupper() else 0.64


def _width(text: str) -> float:
    return sum(_em(c) for c in text) * FONT_SIZE


def _ellipsis(label: str, room: float) -> str:
    """``label``, cut with an ellipsis so that it fits in ``room`` pixels."""
    if _width(label) <= room:
        return label
    while len(label) > 1 and _width(label + "…") > room:
        label = label[:-1]
    return label + "…"


def _legend(
    series: Sequence[tuple[str, str, str]], totals: Mapping[str, int], width: float
) -> Iterator[tuple[int, float, str, str, str]]:
    """Lay legend entries out in rows: (row, x, key, text, colour)."""
    row, x = 0, 0.0
    for key, label, colour in series:
        text = f"{label}: {totals.get(key, 0)}"
        size = 14 + _width(text) + 16
        if x > 0 and x + size > width:
            row, x = row + 1, 0.0
        yield row, x, key, text, colour
        x += size


def stacked_timeline(
    buckets: Sequence[tuple[str, Mapping[str, int]]],
    series: Sequence[tuple[str, str, str]],
    *,
    title: str,
    desc: str,
    id_prefix: str,
    width: int = 640,
    height: int = 240,
    no_data: str = "No data",
) -> Markup:
    """Stacked bars of outcomes per time bucket; ``series`` is (key, label, colour), drawn bottom-up."""
    totals = {key: sum(max(int(c.get(key, 0)), 0) for _, c in buckets) for key, _, _ in series}
    stacks = [sum(max(int(c.get(key, 0)), 0) for key, _, _ in series) for _, c in buckets]
    peak = max(stacks, default=0)
    label_w = max((_width(b) for b, _ in buckets), default=0) + 8
    left = max(len(str(peak)) * CHAR_WIDTH + 14, label_w / 2)  # room for y ticks and half the first x label
    right, top = max(8, label_w / 2), 10
    legend = list(_legend(series, totals, width - left - right))
    legend_h = (legend[-1][0] + 1) * 20 if legend else 0
    plot_w = max(width - left - right, 10)
    plot_h = max(height - top - 24 - legend_h, 40)
    height = top + plot_h + 24 + legend_h
    base = top + plot_h
    out = _open(id_prefix, width, height, title, desc)
    out.append(f'<line x1="{_n(left)}" y1="{_n(base)}" x2="{_n(left + plot_w)}" y2="{_n(base)}" stroke="{AXIS_COLOUR}"/>')
    if peak == 0:
        out.append(_text(left + plot_w / 2, top + plot_h / 2, no_data, "middle", ' class="no-data"'))
    else:
        step = _nice_step(peak)
        for tick in range(0, peak + 1, step):
            y = base - tick / peak * plot_h
            if tick:
                out.append(f'<line x1="{_n(left)}" y1="{_n(y)}" x2="{_n(left + plot_w)}" y2="{_n(y)}" stroke="{GRID_COLOUR}"/>')
            out.append(_text(left - 6, y, str(tick), "end", ' class="y-tick"'))
        slot = plot_w / len(buckets)
        bar_w = min(max(slot * 0.8, 1), 48)
        every = max(math.ceil(len(buckets) * label_w / plot_w), 1)
        for i, (bucket, counts) in enumerate(buckets):
            x = left + i * slot + (slot - bar_w) / 2
            y = base
            for key, label, colour in series:
                value = max(int(counts.get(key, 0)), 0)
                if not value:
                    continue
                h = value / peak * plot_h
                y -= h
                edge = ' stroke="#ffffff" stroke-width="1"' if bar_w >= 6 else ""
                out.append(
                    f'<rect class="bar" data-series="{escape(key)}" x="{_n(x)}" y="{_n(y)}" width="{_n(bar_w)}" '
                    f'height="{_n(h)}" fill="{escape(colour)}"{edge}><title>{escape(f"{bucket} · {label}: {value}")}</title></rect>'
                )
            if i % every == 0:
                out.append(_text(left + (i + 0.5) * slot, base + 12, bucket, "middle", ' class="x-tick"'))
    legend_top = base + 24
    for row, x, key, text, colour in legend:
        y = legend_top + row * 20 + 8
        out.append(
            f'<g class="legend" data-series="{escape(key)}"><rect x="{_n(left + x)}" y="{_n(y - 5)}" width="10" '
            f'height="10" fill="{escape(colour)}"/>{_text(left + x + 14, y, text)}</g>'
        )
    out.append("</svg>")
    return Markup("".join(out))


def horizontal_bars(
    rows: Sequence[tuple[str, int]],
    *,
    title: str,
    desc: str,
    colour: str,
    id_prefix: str,
    width: int = 640,
    bar_height: int = 22,
    no_data: str = "No data",
) -> Markup:
    """One bar per row (label at left, value at the right of the bar), scaled to the largest value."""
    values = [max(int(v), 0) for _, v in rows]
    peak = max(values, default=0)
    label_w = min(max(width * 0.3, 80), 240)
    value_w = len(str(peak)) * CHAR_WIDTH + 10
    plot_x = label_w + 8
    plot_w = max(width - plot_x - value_w, 10)
    pitch = bar_height + 6
    height = max(len(rows) * pitch + 6, 48)
    out = _open(id_prefix, width, height, title, desc)
    if not rows:
        out.append(_text(width / 2, height / 2, no_data, "middle", ' class="no-data"'))
    for i, ((label, _), value) in enumerate(zip(rows, values)):
        y = 3 + i * pitch
        mid = y + bar_height / 2
        bar_w = value / peak * plot_w if peak else 0
        out.append(f'<g class="hbar-row"><title>{escape(f"{label}: {value}")}</title>')
        out.append(_text(label_w, mid, _ellipsis(label, label_w - 4), "end", ' class="label"'))
        out.append(f'<rect class="bar" x="{_n(plot_x)}" y="{_n(y)}" width="{_n(bar_w)}" height="{bar_height}" fill="{escape(colour)}"/>')
        out.append(_text(plot_x + bar_w + 4, mid, str(value), extra=' class="value"'))
        out.append("</g>")
    out.append("</svg>")
    return Markup("".join(out))
