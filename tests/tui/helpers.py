"""Small helpers for Pilot tests: wait for a condition instead of sleeping a fixed time."""

from __future__ import annotations

import time

from textual.widgets import Static


async def wait_for(pilot, condition, timeout: float = 10.0, step: float = 0.05) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {getattr(condition, '__name__', condition)}")
        await pilot.pause(step)


def static_text(widget: Static) -> str:
    """The plain text a Static shows."""
    content = widget.content if hasattr(widget, "content") else widget.renderable  # Textual < 6: renderable
    return content.plain if hasattr(content, "plain") else str(content)


def table_cells(table) -> list[list[str]]:
    return [[str(c) for c in table.get_row_at(i)] for i in range(table.row_count)]
