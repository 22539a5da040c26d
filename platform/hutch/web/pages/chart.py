"""The overview's chart drawn on the server as inline SVG: no script, no style
attribute (the CSP forbids inline styles; the series are coloured by class in
hutch.css), readable by a screen reader through each bucket's ``<title>``."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ...ops.overview import Bucket

WIDTH, HEIGHT = 760, 220
LEFT, RIGHT, TOP, BOTTOM = 44, 8, 10, 24
"""The plot area's margins inside the SVG's box: room for the axis labels."""
SERIES = ("succeeded", "failed", "retried")


@dataclass(frozen=True)
class Slot:
    """One bucket's column: where it is, and what its tooltip says."""

    x: float
    width: float
    title: str


@dataclass(frozen=True)
class Chart:
    """What the template draws: one polyline per series, ticks, and hover columns."""

    width: int
    height: int
    lines: dict[str, str]
    y_ticks: list[tuple[float, int]]
    x_labels: list[tuple[float, str]]
    slots: list[Slot]
    top: int
    bottom: int
    left: int
    right: int


def chart(buckets: Sequence[Bucket], bucket_seconds: int) -> Chart:
    """The chart of ``buckets`` (succeeded, failed, retried in each)."""
    peak = max([max(b.succeeded, b.failed, b.retried) for b in buckets] + [1])
    scale = _nice(peak)
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    step = plot_w / max(1, len(buckets))

    def x(n: int) -> float:
        return round(LEFT + step * (n + 0.5), 1)

    def y(value: int) -> float:
        return round(TOP + plot_h * (1 - value / scale), 1)

    lines = {name: " ".join(f"{x(n)},{y(getattr(b, name))}" for n, b in enumerate(buckets))
             for name in SERIES}
    ticks = [(y(v), v) for v in (0, scale // 2, scale)]
    fmt = "%H:%M" if bucket_seconds < 3600 else "%d %H:%M"
    every = max(1, len(buckets) // 6)
    labels = [(x(n), b.start.strftime(fmt)) for n, b in enumerate(buckets) if n % every == 0]
    slots = [Slot(round(LEFT + step * n, 1), round(step, 1),
                  f"{b.start:%H:%M} UTC: {b.succeeded} succeeded, {b.failed} failed, "
                  f"{b.retried} retried") for n, b in enumerate(buckets)]
    return Chart(WIDTH, HEIGHT, lines, ticks, labels, slots, TOP, HEIGHT - BOTTOM, LEFT,
                 WIDTH - RIGHT)


def _nice(peak: int) -> int:
    """The smallest of 2, 5, 10, 20, 50, ... at or above ``peak`` (an even axis)."""
    magnitude = 1
    while True:
        for factor in (2, 5, 10):
            if factor * magnitude >= peak:
                return factor * magnitude
        magnitude *= 10
