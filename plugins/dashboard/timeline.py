"""A run's timeline: one row per worker slot, one bar per task attempt, laid out for SVG.

Pure layout (no markup): the page's template draws the bars, the JSON API returns them as they
are, and an HTML report can draw the same layout.
"""

from __future__ import annotations

from typing import Any, Dict, Iterable, List, Optional, Tuple

import attrs

from parallelr.jobs.records import AttemptRecord

WIDTH = 1000.0  # the drawing's width in SVG units: the page scales it to fit
ROW_HEIGHT = 18.0
LABEL_WIDTH = 60.0
MIN_BAR = 1.0  # an instant attempt is still a visible bar
# Status -> the bar's CSS class; anything else is "other" (a class name never comes from data).
STATUS_CLASSES = {
    "SUCCESS": "ok", "FAILED": "failed", "TIMEOUT": "timeout", "ERROR": "error", "CANCELLED": "cancelled",
    "LOST": "error", "INTERRUPTED": "cancelled", "RUNNING": "running",
}


@attrs.frozen
class Bar:
    """One attempt: where it is drawn and what its tooltip says."""

    slot: int
    task: str
    position: int
    attempt: int
    status: str
    exit_code: Optional[int]
    started_at: float
    ended_at: float
    x: float
    y: float
    width: float

    @property
    def css(self) -> str:
        return STATUS_CLASSES.get(self.status, "other")

    @property
    def duration(self) -> float:
        return max(0.0, self.ended_at - self.started_at)

    @property
    def tooltip(self) -> str:
        code = "no exit code" if self.exit_code is None else f"exit code {self.exit_code}"
        return f"{self.task} (attempt {self.attempt}): {self.status}, {self.duration:.2f} s, {code}"

    def as_dict(self) -> Dict[str, Any]:
        return {
            "slot": self.slot, "task": self.task, "position": self.position, "attempt": self.attempt,
            "status": self.status, "exit_code": self.exit_code, "started_at": self.started_at,
            "ended_at": self.ended_at, "duration": round(self.duration, 6),
        }


@attrs.frozen
class Timeline:
    slots: Tuple[int, ...]
    bars: Tuple[Bar, ...]
    start: float
    end: float
    height: float

    @property
    def span(self) -> float:
        return max(0.0, self.end - self.start)

    def ticks(self, count: int = 5) -> List[Tuple[float, str]]:
        """``(x, label)`` of time marks along the top, seconds from the start."""
        if self.span <= 0:
            return [(LABEL_WIDTH, "0 s")]
        scale = (WIDTH - LABEL_WIDTH) / self.span
        step = self.span / count
        digits = 0 if step >= 10 else 1 if step >= 1 else 2 if step >= 0.1 else 3
        return [(LABEL_WIDTH + step * i * scale, f"{step * i:.{digits}f} s") for i in range(count + 1)]

    def slot_y(self, slot: int) -> float:
        return self.slots.index(slot) * ROW_HEIGHT + ROW_HEIGHT


def build(attempts: Iterable[Tuple[int, str, AttemptRecord]], now: float) -> Timeline:
    """The timeline of ``(position, task name, attempt)`` triples; an attempt still running ends
    ``now``. Attempts without a start time (never started) are not drawn."""
    drawn = [(position, name, attempt) for position, name, attempt in attempts
             if attempt.started_at is not None]
    if not drawn:
        return Timeline((), (), now, now, ROW_HEIGHT)
    start = min(attempt.started_at for _p, _n, attempt in drawn)  # type: ignore[type-var]
    end = max(_end(attempt, now) for _p, _n, attempt in drawn)
    slots = tuple(sorted({attempt.worker_id or 0 for _p, _n, attempt in drawn}))
    rows = {slot: index for index, slot in enumerate(slots)}
    scale = (WIDTH - LABEL_WIDTH) / (end - start) if end > start else 0.0
    bars = []
    for position, name, attempt in drawn:
        begun = float(attempt.started_at)  # type: ignore[arg-type]
        ended = _end(attempt, now)
        slot = attempt.worker_id or 0
        width = max(MIN_BAR, (ended - begun) * scale)
        bars.append(Bar(
            slot=slot, task=name, position=position, attempt=attempt.attempt, status=attempt.status,
            exit_code=attempt.exit_code, started_at=begun, ended_at=ended,
            x=min(LABEL_WIDTH + (begun - start) * scale, WIDTH - width),  # an instant at the end stays inside
            y=rows[slot] * ROW_HEIGHT + ROW_HEIGHT + 2, width=width,
        ))
    return Timeline(slots, tuple(bars), start, end, (len(slots) + 1) * ROW_HEIGHT + 4)


def _end(attempt: AttemptRecord, now: float) -> float:
    """An attempt still running (no end yet) is drawn up to ``now``."""
    return float(now if attempt.ended_at is None else attempt.ended_at)
