"""Per-layer fractions as a vertical bar chart with eighth-block resolution: in compare mode the share of a
layer's neurons whose top-1 token is the same in both models, in the browser (A) the share whose decode
names what they fire on. The y axis is scaled to the data (the smallest of 1, 2, 5, 10, 20, 25, 50, 100 %
above the highest bar and the chance level), so layers at 2-10 % are not flattened to ▁; a chance level, when
given, is drawn as a ╌ line across the bars that do not reach it."""

from __future__ import annotations

from rich.text import Text
from textual.widget import Widget

BLOCKS = " ▁▂▃▄▅▆▇█"
AXIS = 5  # "100%│"
CHANCE = "╌"
SCALES = (0.01, 0.02, 0.05, 0.1, 0.2, 0.25, 0.5, 1.0)


def axis_top(fractions: list[float], chance: float | None = None) -> float:
    """The y axis' top: the smallest scale step at or above every bar and the chance level."""
    peak = max([*fractions, chance or 0.0, 0.0])
    return next((s for s in SCALES if peak <= s), 1.0)


def _percent(value: float) -> str:
    return f"{value:.0%}" if value >= 0.01 else f"{value:.1%}"


def chart_text(
    fractions: list[float], width: int, height: int, selected: int | None = None, chance: float | None = None
) -> Text:
    """The bars (``height`` rows, y axis 0 to axis_top) and a layer axis, fitted into ``width`` cells; the
    chance level (a fraction, or None) as a ╌ line where the bars stay under it."""
    top = axis_top(fractions, chance)
    n = len(fractions)
    room = max(1, width - AXIS)
    per = room // max(1, n)
    gap = 1 if per > 1 else 0
    bar_w = max(1, min(4, per - gap))
    step = bar_w + gap
    shown = fractions[: max(1, room // step)]
    chance_row = None if chance is None else min(height - 1, int(chance / top * height))
    text = Text(no_wrap=True, overflow="crop")
    for row in range(height - 1, -1, -1):
        label = _percent(top).rjust(4) if row == height - 1 else ("  0%" if row == 0 else "    ")
        text.append(label + "│", style="dim")
        line = row == chance_row
        for layer, frac in enumerate(shown):
            level = max(0.0, min(1.0, frac / top * height - row))
            cell = BLOCKS[int(round(level * 8))] if frac > 0 or row else "▁"
            if line and cell == " ":
                text.append(CHANCE * bar_w, style="yellow")
            else:
                text.append(cell * bar_w, style=_style(frac, layer == selected, chance))
            text.append((CHANCE if line else " ") * gap, style="yellow")
        text.append("\n")
    axis = [" "] * (len(shown) * step)
    every = max(1, -(-4 // step))  # a label every few bars, never overlapping
    for layer in range(0, len(shown), every):
        label = str(layer)
        start = layer * step
        if start + len(label) <= len(axis) and all(c == " " for c in axis[max(0, start - 1) : start + len(label)]):
            axis[start : start + len(label)] = label
    text.append(" " * (AXIS - 1) + "L", style="dim")
    text.append("".join(axis), style="dim")
    if len(shown) < n:
        text.append(f" (+{n - len(shown)})", style="dim")
    return text


def _style(frac: float, selected: bool, chance: float | None) -> str:
    if selected:
        return "bold yellow"
    if chance is not None:  # against chance: well above it, above it, at or under it
        return "green" if frac >= 2 * chance else "blue" if frac > chance else "red"
    return "green" if frac >= 0.75 else "red" if frac < 0.5 else "blue"


class AgreementChart(Widget):
    """Title line (overall agreement, the selected layer's) over the bars; a status line until ready."""

    DEFAULT_CSS = "AgreementChart { height: 7; text-wrap: nowrap; text-overflow: ellipsis; }"
    BAR_ROWS = 4

    def __init__(self, label: str = "same top-1", **kwargs):
        super().__init__(**kwargs)
        self.label = label
        self.fractions: list[float] = []
        self.title = ""
        self.status = "comparing…"
        self.selected: int | None = None
        self.chance: float | None = None

    def show(self, fractions: list[float], title: str, chance: float | None = None) -> None:
        self.fractions, self.title, self.status, self.chance = list(fractions), title, "", chance
        self.refresh()

    def set_status(self, text: str) -> None:
        self.status = text
        self.refresh()

    def select(self, layer: int | None) -> None:
        if layer != self.selected:
            self.selected = layer
            self.refresh()

    def render(self) -> Text:
        if self.status or not self.fractions:
            return Text(self.status or "nothing to compare yet", style="dim italic")
        head = Text(no_wrap=True, overflow="ellipsis")
        head.append(f"{self.label} ", style="bold")
        if self.selected is not None and 0 <= self.selected < len(self.fractions):
            head.append(f"L{self.selected} {self.fractions[self.selected]:.1%}", style="bold yellow")
        head.append(f" · {self.title}", style="dim")
        if self.chance is not None:
            head.append(f" · {CHANCE} chance", style="yellow")
        rows = max(1, min(self.BAR_ROWS, self.size.height - 2))
        return head + Text("\n") + chart_text(self.fractions, max(8, self.size.width), rows, self.selected, self.chance)
