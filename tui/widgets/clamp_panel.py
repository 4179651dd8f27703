"""The clamp basket: the neurons to clamp, their values and modes; editable and clearable."""

from __future__ import annotations

from typing import Any

from textual.binding import Binding
from textual.widgets import DataTable

from ...core.clamp import Clamp, ClampSet
from ..host import host


class ClampPanel(DataTable):
    """One row per clamp. enter/e edits the value, x/delete removes, X clears the basket, U undoes the last
    remove or clear (the toast says so)."""

    BINDINGS = [
        Binding("enter,e", "edit", "Edit value", id="basket.edit"),
        Binding("x,delete", "remove", "Remove", key_display="x", id="basket.remove"),
        Binding("X", "clear", "Clear basket", id="basket.clear"),
        Binding("U", "undo", "Undo", id="basket.undo"),
        Binding("j", "cursor_down", "Down", show=False, id="basket.down"),
        Binding("k", "cursor_up", "Up", show=False, id="basket.up"),
    ]

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(cursor_type="row", zebra_stripes=False, **kwargs)
        self.clamps: list[Clamp] = []
        self.undo: list[list[Clamp]] = []  # the basket before each remove or clear, newest last

    def on_mount(self) -> None:
        self.add_columns("neuron", "value", "mode")
        self.refill()

    @property
    def clamp_set(self) -> ClampSet:
        return ClampSet(list(self.clamps))

    def refill(self) -> None:
        row = self.cursor_row
        self.clear()
        self.add_rows([(str(c.ref), f"{c.value:g}", c.mode) for c in self.clamps])
        self.border_title = f"clamp basket ({len(self.clamps)})" if self.clamps else "clamp basket: empty (c adds)"
        if self.clamps:
            self.move_cursor(row=min(max(row, 0), len(self.clamps) - 1))

    def put(self, clamp: Clamp) -> None:
        """Add a clamp, replacing one on the same neuron."""
        for i, old in enumerate(self.clamps):
            if old.ref == clamp.ref:
                self.clamps[i] = clamp
                break
        else:
            self.clamps.append(clamp)
        self.refill()

    def action_edit(self) -> None:
        if not self.clamps:
            return
        old = self.clamps[self.cursor_row]

        def done(result: tuple[float, str] | None) -> None:
            if result is not None:
                self.put(Clamp(old.ref, result[0], result[1]))

        host(self).ask_clamp_value(old.ref, old.value, old.mode, "edit the value", done)

    def action_remove(self) -> None:
        if self.clamps:
            self.undo.append(list(self.clamps))
            gone = self.clamps.pop(self.cursor_row)
            self.refill()
            self.app.notify(f"removed {gone.ref} from the basket: U puts it back", title="clamp", timeout=4)

    def action_clear(self) -> None:
        if not self.clamps:
            self.app.notify("the clamp basket is already empty", title="clamp", timeout=2)
            return
        self.undo.append(list(self.clamps))
        n = len(self.clamps)
        self.clamps.clear()
        self.refill()
        self.app.notify(
            f"clamp basket cleared ({n} clamp{'s' if n > 1 else ''}): U puts {'them' if n > 1 else 'it'} back",
            title="clamp",
            timeout=6,
        )

    def action_undo(self) -> None:
        if not self.undo:
            self.app.notify("nothing to undo in the basket", title="clamp", timeout=2)
            return
        self.clamps = self.undo.pop()
        self.refill()
        self.app.notify(f"basket restored ({len(self.clamps)} clamps)", title="clamp", timeout=2)
