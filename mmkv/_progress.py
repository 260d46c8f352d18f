"""Progress: a one-line progress bar on stderr for long command-line runs.

Drawn only when stderr is a terminal, first after MMKV_PROGRESS_DELAY seconds (default 1),
then at most ten times a second.  Every line is cut to the terminal's width less one column,
so a redraw (carriage return, then erase to the end of the line) never wraps and never
leaves a line behind; finish() ends the line.
"""
from __future__ import annotations

import os
import sys
import time

_BAR_MAX = 28           # cells of the bar on a wide terminal
_BAR_MIN = 10           # narrower than this, the bar is left out


def _delay() -> float:
    try:
        return max(0.0, float(os.environ.get("MMKV_PROGRESS_DELAY", "1")))
    except ValueError:
        return 1.0


def _columns() -> int:
    """The width of the terminal on stderr (80 when it cannot be known)."""
    try:
        return os.get_terminal_size(sys.stderr.fileno()).columns or 80
    except (AttributeError, OSError, ValueError):
        return 80


def _fit(candidates: list[str], room: int) -> str:
    """The first candidate no longer than room, else the last one cut to room."""
    for text in candidates:
        if len(text) <= room:
            return text
    return candidates[-1][:room]


class Progress:
    """A progress bar: update(done, note) as work goes on, finish() at the end."""

    def __init__(self, label: str, total: int | None = None, unit: str = "records") -> None:
        self._label, self._total, self._unit = label, total, unit
        try:
            self._on = sys.stderr is not None and sys.stderr.isatty()
        except (AttributeError, ValueError):
            self._on = False
        self._start = time.monotonic()
        self._next = self._start + _delay()
        self._shown = False
        self._done = 0
        self._note = ""

    def update(self, done: int, note: str = "") -> None:
        self._done, self._note = done, note
        if self._on:
            now = time.monotonic()
            if now >= self._next:
                self._next = now + 0.1
                self._draw(now)

    def line(self, now: float, columns: int) -> str:
        """The text of the bar at time now, at most columns - 1 characters: what does not
        fit goes first the rate, then cells of the bar, then the bar itself."""
        room = max(columns - 1, 1)
        rate = f"  {self._done / max(now - self._start, 1e-9):,.0f} {self._unit}/s"
        note = f"  {self._note}" if self._note else ""
        if not self._total:
            return _fit([f"{self._label} {self._done:,} {self._unit}{rate}{note}",
                         f"{self._label} {self._done:,} {self._unit}{note}"], room)
        frac = min(self._done / self._total, 1.0)
        count = f"{100 * frac:5.1f}%  {self._done:,}/{self._total:,} {self._unit}"
        for tail in (f"{count}{rate}{note}", f"{count}{note}"):
            width = min(_BAR_MAX, room - len(self._label) - len(" [] ") - len(tail))
            if width >= _BAR_MIN:
                fill = int(frac * width)
                return f"{self._label} [{'#' * fill}{'-' * (width - fill)}] {tail}"
        return _fit([f"{self._label} {count}{note}"], room)

    def _draw(self, now: float) -> None:
        sys.stderr.write(f"\r{self.line(now, _columns())}\x1b[K")   # \x1b[K: erase the rest
        sys.stderr.flush()
        self._shown = True

    def finish(self, done: int | None = None, note: str | None = None) -> None:
        if done is not None:
            self._done = done
        if note is not None:
            self._note = note
        if self._shown:
            self._draw(time.monotonic())
            sys.stderr.write("\n")
            sys.stderr.flush()
