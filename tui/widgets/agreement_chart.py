"""Per-layer agreement of two models as a vertical bar chart: one bar per layer, the fraction of its
neurons whose top-1 token is the same in both models, drawn with eighth-block resolution."""
from __future__ import annotations

from rich.text import Text
from textual.widget import Widget

BLOCKS = " ▁▂▃▄▅▆▇█"
AXIS = 5  # "100%│"


def chart_text(fractions: list[float], width: int, height: int, selected: int | None = None) -> Text:
    """The bars (``height`` rows, y axis 0-100 %) and a layer axis, fitted into ``width`` cells."""
    n = len(fractions)
    room = max(1, width - AXIS)
    per = room // max(1, n)
    gap = 1 if per > 1 else 0
    bar_w = max(1, min(4, per - gap))
    step = bar_w + gap
    shown = fractions[: max(1, room // step)]
    text = Text(no_wrap=True, overflow="crop")
    for row in range(height - 1, -1, -1):
        label = "100%" if row == height - 1 else ("  0%" if row == 0 else "    ")
        text.append(label + "│", style="dim")
        for layer, frac in enumerate(shown):
            level = max(0.0, min(1.0, frac * height - row))
            cell = BLOCKS[int(round(level * 8))] if frac > 0 or row else "▁"
            style = "bold yellow" if layer == selected else ("green" if frac >= 0.75 else "red" if frac < 0.5
                                                                 else "blue")
            text.append(cell * bar_w, style=style)
            text.append(" " * gap)
        text.append("\n")
    axis = [" "] * (len(shown) * step)
    every = max(1, -(-4 // step))          # a label every few bars, never overlapping
    for layer in range(0, len(shown), every):
        label = str(layer)
        start = layer * step
        if start + len(label) <= len(axis) and all(c == " " for c in axis[max(0, start - 1):start + len(label)]):
            axis[start:start + len(label)] = label
    text.append(" " * (AXIS - 1) + "L", style="dim")
    text.append("".join(axis), style="dim")
    if len(shown) < n:
        text.append(f" (+{n - len(shown)})", style="dim")
    return text


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

    def show(self, fractions: list[float], title: str) -> None:
        self.fractions, self.title, self.status = list(fractions), title, ""
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
        rows = max(1, min(self.BAR_ROWS, self.size.height - 2))
        return head + Text("\n") + chart_text(self.fractions, max(8, self.size.width), rows, self.selected)
