"""Charts as inline SVG drawn on the server: no chart library, nothing to download."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from html import escape

WIDTH, HEIGHT, PAD = 600, 160, 28


def _frame(body: str, label: str, top: str) -> str:
    return (f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT + 20}" role="img" '
            f'aria-label="{escape(label)}" xmlns="http://www.w3.org/2000/svg">'
            f'<line x1="{PAD}" y1="{HEIGHT}" x2="{WIDTH}" y2="{HEIGHT}" class="axis"/>'
            f'<text x="0" y="12" class="tick">{escape(top)}</text>'
            f'<text x="0" y="{HEIGHT}" class="tick">0</text>{body}</svg>')


def _ticks(times: Sequence[datetime]) -> str:
    if not times:
        return ""
    step = (WIDTH - PAD) / len(times)
    out = []
    for i in range(0, len(times), max(1, len(times) // 6)):
        out.append(f'<text x="{PAD + i * step:.1f}" y="{HEIGHT + 16}" class="tick">'
                   f'{times[i]:%H:%M}</text>')
    return "".join(out)


def throughput(series: Sequence[tuple[datetime, int, int, int]]) -> str:
    """Stacked bars per minute: succeeded, failed, revoked."""
    top = max((ok + failed + revoked for _, ok, failed, revoked in series), default=0) or 1
    step = (WIDTH - PAD) / max(len(series), 1)
    scale = (HEIGHT - 16) / top
    bars = []
    for i, (minute, ok, failed, revoked) in enumerate(series):
        x = PAD + i * step
        y = float(HEIGHT)
        for value, kind in ((ok, "ok"), (failed, "failed"), (revoked, "revoked")):
            if value:
                h = value * scale
                y -= h
                bars.append(f'<rect x="{x:.1f}" y="{y:.1f}" width="{max(step - 1, 1):.1f}" '
                            f'height="{h:.1f}" class="{kind}"><title>{minute:%H:%M} '
                            f'{kind}: {value}</title></rect>')
    return _frame("".join(bars) + _ticks([s[0] for s in series]),
                  "jobs finished per minute", f"{top}/min")


def failure_rate(series: Sequence[tuple[datetime, int, int, int]]) -> str:
    """The share of finished jobs that failed, per minute, as a line."""
    step = (WIDTH - PAD) / max(len(series), 1)
    points = []
    for i, (_, ok, failed, revoked) in enumerate(series):
        total = ok + failed + revoked
        if total:
            points.append(f"{PAD + i * step + step / 2:.1f},"
                          f"{HEIGHT - (HEIGHT - 16) * failed / total:.1f}")
    line = f'<polyline points="{" ".join(points)}" class="rate"/>' if points else ""
    dots = "".join(f'<circle cx="{p.split(",")[0]}" cy="{p.split(",")[1]}" r="2" '
                   'class="rate-dot"/>' for p in points)
    return _frame(line + dots + _ticks([s[0] for s in series]), "failure rate per minute",
                  "100%")
