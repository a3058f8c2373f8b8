"""Inline SVG line charts (no JavaScript, no CDN): one polyline per series, gaps where a value is unknown."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from html import escape

from markupsafe import Markup


def line_chart(
    points: Sequence[tuple[datetime, float | None]],
    *,
    title: str,
    unit: str = "",
    width: int = 560,
    height: int = 160,
    limit: float | None = None,
) -> Markup:
    """An accessible SVG chart of `points` (time, value); `limit` draws a dashed threshold line."""
    pad_l, pad_r, pad_t, pad_b = 44, 8, 22, 22
    w, h = width - pad_l - pad_r, height - pad_t - pad_b
    known = [(t, v) for t, v in points if v is not None]
    head = (
        f'<svg class="chart" role="img" viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
        f'xmlns="http://www.w3.org/2000/svg"><title>{escape(title)}</title>'
        f'<text x="{pad_l}" y="14" class="chart-title">{escape(title)}</text>'
    )
    if not known:
        return Markup(head + f'<text x="{pad_l}" y="{pad_t + h / 2:.0f}">Chưa có số liệu</text></svg>')
    t0 = min(t for t, _ in known).timestamp()
    t1 = max(t for t, _ in known).timestamp()
    values = [v for _, v in known] + ([limit] if limit is not None else [])
    lo, hi = min(0.0, min(values)), max(values)
    if hi <= lo:
        hi = lo + 1.0
    span = max(t1 - t0, 1.0)

    def x(t: datetime) -> float:
        return pad_l + (t.timestamp() - t0) / span * w

    def y(v: float) -> float:
        return pad_t + h - (v - lo) / (hi - lo) * h

    parts = [head]
    parts.append(f'<line x1="{pad_l}" y1="{pad_t + h}" x2="{pad_l + w}" y2="{pad_t + h}" class="axis"/>')
    parts.append(f'<text x="{pad_l - 4}" y="{pad_t + 4}" text-anchor="end">{hi:.0f}{escape(unit)}</text>')
    parts.append(f'<text x="{pad_l - 4}" y="{pad_t + h}" text-anchor="end">{lo:.0f}{escape(unit)}</text>')
    first, last = min(t for t, _ in known), max(t for t, _ in known)
    parts.append(f'<text x="{pad_l}" y="{height - 4}">{first:%d/%m %H:%M}</text>')
    parts.append(f'<text x="{pad_l + w}" y="{height - 4}" text-anchor="end">{last:%d/%m %H:%M}</text>')
    if limit is not None:
        parts.append(f'<line x1="{pad_l}" y1="{y(limit):.1f}" x2="{pad_l + w}" y2="{y(limit):.1f}" class="limit"/>')
    segment: list[str] = []
    for t, v in sorted(points, key=lambda p: p[0]):
        if v is None:
            if segment:
                parts.append(f'<polyline points="{" ".join(segment)}" class="series"/>')
            segment = []
            continue
        segment.append(f"{x(t):.1f},{y(v):.1f}")
    if segment:
        parts.append(f'<polyline points="{" ".join(segment)}" class="series"/>')
    parts.append("</svg>")
    return Markup("".join(parts))
