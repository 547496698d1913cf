"""A run's timeline: one row per worker slot, one bar per task attempt, laid out for SVG.

Pure layout (no markup): the dashboard's run page and the HTML report draw the bars, the
dashboard's JSON API returns them as they are. A bar is drawn from anything shaped like a stored
attempt (:class:`Span`: the store's AttemptRecord, the HTML report's Attempt), so the dashboard
passes the store's rows unchanged. :class:`Frame` places bars one at a time once the span and the
slots are known, so a report of a big run streams its bars instead of holding them; past some
thousands of attempts single bars are thinner than a pixel, and :class:`Grid` counts the attempts
of each slot in time columns instead.
"""

from __future__ import annotations

from typing import Any, Dict, Iterable, Iterator, List, Optional, Protocol, Tuple

import attrs

WIDTH = 1000.0  # the drawing's width in SVG units: the page scales it to fit
ROW_HEIGHT = 18.0
LABEL_WIDTH = 60.0
MIN_BAR = 1.0  # an instant attempt is still a visible bar
BAR_HEIGHT = 14.0
# Status -> the bar's CSS class; anything else is "other" (a class name never comes from data).
STATUS_CLASSES = {
    "SUCCESS": "ok", "FAILED": "failed", "TIMEOUT": "timeout", "ERROR": "error", "CANCELLED": "cancelled",
    "LOST": "error", "INTERRUPTED": "cancelled", "RUNNING": "running",
}
# A column of many attempts takes the colour of the worst of them: a failure among a thousand
# successes is what the reader looks for.
SEVERITY = ("failed", "timeout", "error", "running", "cancelled", "other", "ok")
COLUMNS = 200  # time columns per slot when attempts are counted instead of drawn


class Span(Protocol):
    """What a bar is drawn from: one attempt of one task."""

    @property
    def attempt(self) -> int: ...

    @property
    def status(self) -> str: ...

    @property
    def exit_code(self) -> Optional[int]: ...

    @property
    def worker_id(self) -> Optional[int]: ...

    @property
    def started_at(self) -> Optional[float]: ...

    @property
    def ended_at(self) -> Optional[float]: ...


def css_class(status: str) -> str:
    return STATUS_CLASSES.get(status, "other")


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
        return css_class(self.status)

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
class Frame:
    """The drawing's axes, known before its first bar: the time span and the worker slots."""

    start: float
    end: float
    slots: Tuple[int, ...]
    rows: Dict[int, int] = attrs.field(init=False, eq=False, repr=False)

    @rows.default
    def _rows(self) -> Dict[int, int]:
        return {slot: index for index, slot in enumerate(self.slots)}

    @property
    def span(self) -> float:
        return max(0.0, self.end - self.start)

    @property
    def scale(self) -> float:
        """SVG units per second."""
        return (WIDTH - LABEL_WIDTH) / self.span if self.span > 0 else 0.0

    @property
    def height(self) -> float:
        return (len(self.slots) + 1) * ROW_HEIGHT + 4

    def ticks(self, count: int = 5) -> List[Tuple[float, str]]:
        """``(x, label)`` of time marks along the top, seconds from the start."""
        if self.span <= 0:
            return [(LABEL_WIDTH, "0 s")]
        step = self.span / count
        digits = 0 if step >= 10 else 1 if step >= 1 else 2 if step >= 0.1 else 3
        return [(LABEL_WIDTH + step * i * self.scale, f"{step * i:.{digits}f} s") for i in range(count + 1)]

    def slot_y(self, slot: int) -> float:
        return self.rows[slot] * ROW_HEIGHT + ROW_HEIGHT

    def bar(self, position: int, name: str, attempt: Span, now: float) -> Bar:
        """The bar of a started attempt (one still running ends ``now``); its slot must be one of
        the frame's."""
        begun = float(attempt.started_at)  # type: ignore[arg-type]
        ended = _end(attempt, now)
        slot = attempt.worker_id or 0
        width = max(MIN_BAR, (ended - begun) * self.scale)
        return Bar(
            slot=slot, task=name, position=position, attempt=attempt.attempt, status=attempt.status,
            exit_code=attempt.exit_code, started_at=begun, ended_at=ended,
            # an instant at the end stays inside the drawing
            x=min(LABEL_WIDTH + (begun - self.start) * self.scale, WIDTH - width),
            y=self.rows[slot] * ROW_HEIGHT + ROW_HEIGHT + 2, width=width,
        )


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
        return Frame(self.start, self.end, self.slots).ticks(count)

    def slot_y(self, slot: int) -> float:
        return self.slots.index(slot) * ROW_HEIGHT + ROW_HEIGHT


def build(attempts: Iterable[Tuple[int, str, Span]], now: float) -> Timeline:
    """The timeline of ``(position, task name, attempt)`` triples; an attempt still running ends
    ``now``. Attempts without a start time (never started) are not drawn."""
    drawn = [(position, name, attempt) for position, name, attempt in attempts
             if attempt.started_at is not None]
    if not drawn:
        return Timeline((), (), now, now, ROW_HEIGHT)
    start = min(attempt.started_at for _p, _n, attempt in drawn)  # type: ignore[type-var]
    end = max(_end(attempt, now) for _p, _n, attempt in drawn)
    frame = Frame(start, end, tuple(sorted({attempt.worker_id or 0 for _p, _n, attempt in drawn})))
    bars = tuple(frame.bar(position, name, attempt, now) for position, name, attempt in drawn)
    return Timeline(frame.slots, bars, start, end, frame.height)


@attrs.frozen
class Cell:
    """The attempts of one slot that ran in one time column: drawn as one box, counted in its tooltip."""

    slot: int
    x: float
    y: float
    width: float
    began: float  # seconds from the run's start: the column's edges
    ended: float
    counts: Tuple[Tuple[str, int], ...]  # (status, attempts), most first

    @property
    def css(self) -> str:
        """The worst status's class."""
        classes = {css_class(status) for status, _count in self.counts}
        return next(css for css in SEVERITY if css in classes)

    def bands(self, height: float = BAR_HEIGHT) -> List[Tuple[str, float, float]]:
        """``(css class, y, height)`` of the box's stacked parts, one per class, as tall as its
        share of the attempts (at least a pixel, so one failure among thousands shows), the
        worst on top."""
        shares: Dict[str, int] = {}
        for status, count in self.counts:
            css = css_class(status)
            shares[css] = shares.get(css, 0) + count
        total = sum(shares.values())
        parts = []
        y = self.y
        for css in SEVERITY:
            if css in shares:
                tall = max(1.0, height * shares[css] / total)
                parts.append((css, y, tall))
                y += tall
        # the minimum heights may overflow the box: the last (most common, best) part gives way
        css, top, _tall = parts[-1]
        parts[-1] = (css, top, max(0.0, self.y + height - top))
        return parts

    @property
    def tooltip(self) -> str:
        total = sum(count for _status, count in self.counts)
        parts = ", ".join(f"{count} {status}" for status, count in self.counts)
        return f"slot {self.slot}, {self.began:.2f}-{self.ended:.2f} s: {total} attempt(s): {parts}"


class Grid:
    """Counts attempts per slot and time column: the timeline of a run too big to draw a bar per
    attempt. Memory is bounded by slots x columns, whatever the number of attempts."""

    def __init__(self, frame: Frame, columns: int = COLUMNS) -> None:
        self.frame = frame
        self.columns = columns
        self._counts: Dict[Tuple[int, int], Dict[str, int]] = {}

    def _column(self, moment: float) -> int:
        if self.frame.span <= 0:
            return 0
        column = int((moment - self.frame.start) / self.frame.span * self.columns)
        return min(self.columns - 1, max(0, column))

    def add(self, attempt: Span, now: float) -> None:
        """Count a started attempt in every column it ran in (an attempt of a slot runs while the
        slot's other attempts do not, so a slot's columns add up to its attempts plus its columns)."""
        slot = attempt.worker_id or 0
        for column in range(self._column(float(attempt.started_at)),  # type: ignore[arg-type]
                            self._column(_end(attempt, now)) + 1):
            counts = self._counts.setdefault((slot, column), {})
            counts[attempt.status] = counts.get(attempt.status, 0) + 1

    def cells(self) -> Iterator[Cell]:
        width = (WIDTH - LABEL_WIDTH) / self.columns
        seconds = self.frame.span / self.columns
        for (slot, column), counts in sorted(self._counts.items()):
            yield Cell(
                slot=slot, x=LABEL_WIDTH + column * width, y=self.frame.slot_y(slot) + 2, width=width,
                began=column * seconds, ended=(column + 1) * seconds,
                counts=tuple(sorted(counts.items(), key=lambda item: (-item[1], item[0]))),
            )


def _end(attempt: Span, now: float) -> float:
    """An attempt still running (no end yet) is drawn up to ``now``."""
    return float(now if attempt.ended_at is None else attempt.ended_at)
