"""Compare mode's pane (`neuroscope tui BASE --compare OTHER`): the per-layer agreement as a bar chart, a
"changed only" list that walks the most-changed neurons, and the selected neuron in both models side by
side. It owns the other model (decoded in its own worker when its cache is incomplete), the statistics
(computed in a worker from the two caches, core.compare, whenever the view or direction changes) and the
filter's search of both models. Its keys (``KEYS``) work anywhere on its screen (keys.screen_wide)."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.widgets import DataTable
from textual.worker import Worker, WorkerState

from ...cache.store import Hit, Store
from ...core.compare import Comparison, SafetensorsWeights, compare_stores
from ...core.loading.sources import Source
from ...core.refs import NeuronRef
from ...errors import CorruptCache, Incompatible
from ..browsing import Browsing
from ..host import host
from ..messages import CompareFailed, CompareReady, CompareStatus
from ..options import model_for
from .agreement_chart import AgreementChart
from .compare_panes import ChangedTable, ComparePanes
from .filter import RESULT_LIMIT, search_cache

CHANGED = 200  # most-changed neurons listed
KEYS = [
    Binding("o", "changed_only", "Changed", id="compare.changed"),
    Binding("right_square_bracket", "walk_changed(1)", "Next changed", show=False, id="compare.next"),
    Binding("left_square_bracket", "walk_changed(-1)", "Prev changed", show=False, id="compare.prev"),
]


def _complete(path: Path, view: str | None = None) -> bool:
    if not path.exists():
        return False
    try:
        with Store(path, readonly=True) as store:
            return store.ready and store.has_decoded([view] if view else None)
    except CorruptCache:  # the decode worker removes it (announced) and starts again
        return False


def merge_hits(base_hits: list[Hit], other_hits: list[Hit]) -> tuple[list[Hit], list[str]]:
    """One row per (neuron, view, direction): the stronger hit, and which model(s) matched."""
    merged: dict[tuple[int, int, str, str], tuple[Hit, str]] = {}
    for where, hits in (("base", base_hits), ("other", other_hits)):
        for h in hits:
            key = (h.layer, h.neuron, h.view, h.direction)
            if key in merged:
                old, _ = merged[key]
                merged[key] = (h if h.prob > old.prob else old, "both")
            else:
                merged[key] = (h, where)
    rows = sorted(merged.values(), key=lambda item: (-item[0].prob, item[0].layer, item[0].neuron))
    return [h for h, _ in rows][:RESULT_LIMIT], [w for _, w in rows][:RESULT_LIMIT]


class ComparisonPane(Vertical):
    def __init__(self, browsing: Browsing, other: Source, goto: Callable[..., bool], **kwargs):
        """``goto(ref, focus_tree=False)``: the screen's, to show a neuron in the tree and the panes."""
        super().__init__(**kwargs)
        self.browsing = browsing
        self.other = other
        self.goto = goto
        self.other_model = model_for(other, browsing.options)
        self.other_path = self.other_model.path
        self.same_model = self.other_path == browsing.path
        self.other_store: Store | None = None
        self.other_ready = False
        self.comparison: Comparison | None = None
        self.readers: tuple[SafetensorsWeights, SafetensorsWeights] | None = None

    def compose(self) -> ComposeResult:
        yield AgreementChart(id="agreement")
        yield ChangedTable(id="changed")
        yield ComparePanes(id="compare")

    @property
    def chart(self) -> AgreementChart:
        return self.query_one("#agreement", AgreementChart)

    @property
    def changed_table(self) -> ChangedTable:
        return self.query_one("#changed", ChangedTable)

    def on_mount(self) -> None:
        self.changed_table.display = False
        if self.same_model:
            self.notify(
                f"BASE and OTHER are the same model ({self.browsing.source.name}): every neuron agrees "
                f"with itself, agreement 1.0",
                title="compare",
                timeout=6,
            )
        self.other_worker()

    def on_unmount(self) -> None:
        if self.other_store is not None:
            self.other_store.close()

    # -- the other model ---------------------------------------------------------------------
    @work(thread=True, exclusive=True, exit_on_error=False, group="decode-other", name="decode other")
    def other_worker(self) -> str:
        if self.same_model or _complete(self.other_path):
            return "ready"
        last = [0.0]

        def progress(done: int, total: int) -> None:
            if time.monotonic() - last[0] >= 0.2 or done == total:
                last[0] = time.monotonic()
                self.post_message(
                    CompareStatus(f"decoding {self.other.name} for the comparison: {done / max(1, total):.0%}")
                )

        self.post_message(CompareStatus(f"loading {self.other.name} to decode it…"))
        self.other_model.progress = lambda _label: (progress, lambda: None)
        self.other_model.decode(cancel=self.browsing.cancel, announce=False)  # imports torch: in this thread
        return "ready"

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        host(self).route_worker_state(event)
        if event.worker.group == "decode-other" and event.state == WorkerState.ERROR:
            self.chart.set_status(f"could not decode {self.other.name}: {event.worker.error}")
        if (
            event.state == WorkerState.SUCCESS
            and event.worker.group == "decode-other"
            and event.worker.result == "ready"
        ):
            self.other_ready = True
            self.open_other()
            self.start_compare()

    def open_other(self) -> None:
        if self.other_store is not None:
            self.other_store.close()
        self.other_store = Store(self.other_path, readonly=True)
        if self.browsing.current is not None:
            self.call_after_refresh(self.show, self.browsing.current)

    # -- statistics ----------------------------------------------------------------------------
    def start_compare(self) -> None:
        """Make the statistics for the view and direction shown (after a switch, or the base's decode)."""
        if self.other_ready:
            self.compare_worker(self.browsing.view, self.browsing.direction)

    @work(thread=True, exclusive=True, exit_on_error=False, group="compare", name="compare")
    def compare_worker(self, view: str, direction: str) -> None:
        base_source, path = self.browsing.source, self.browsing.path
        if not _complete(path, view):
            self.post_message(CompareStatus(f"waiting for {base_source.name}'s decode…"))
            return
        self.post_message(CompareStatus("comparing…"))
        with Store(path, readonly=True) as base, Store(self.other_path, readonly=True) as other:
            try:
                result = compare_stores(
                    base, other, view, direction, top=CHANGED, base_source=base_source, other_source=self.other
                )
            except Incompatible as exc:
                self.post_message(CompareFailed(str(exc)))
                return
        if self.readers is None:
            self.readers = (SafetensorsWeights(base_source.load_dir), SafetensorsWeights(self.other.load_dir))
        self.post_message(CompareReady(result))

    def on_compare_status(self, message: CompareStatus) -> None:
        self.chart.set_status(message.text)

    def on_compare_failed(self, message: CompareFailed) -> None:  # the screen shows it in an error modal too
        self.chart.set_status(f"cannot compare: {message.text}")

    def on_compare_ready(self, message: CompareReady) -> None:
        c = message.comparison
        if (c.view, c.direction) != (self.browsing.view, self.browsing.direction):
            return  # stale: the view changed while it ran
        self.comparison = c
        self.chart.show(
            [p.same_top1 for p in c.per_layer],
            f"all layers {c.same_top1:.1%} · jaccard {c.mean_topk_jaccard:.2f} · {c.view} {c.direction}",
        )
        self.changed_table.fill(c.most_changed)
        if self.browsing.current is not None:
            self.show(self.browsing.current)

    # -- the selected neuron in both models ------------------------------------------------------
    def show(self, ref: NeuronRef) -> None:
        store, b = self.browsing.store, self.browsing
        if store is None or not self.is_mounted:
            return
        self.chart.select(ref.layer)
        other = self.other_store if not self.same_model else store
        top_b = store.top(ref.layer, ref.neuron, b.view, b.direction)
        top_o = other.top(ref.layer, ref.neuron, b.view, b.direction) if other is not None else None
        self.query_one("#compare", ComparePanes).show(
            ref, b.view, b.direction, (b.source.name, self.other.name), (top_b, top_o), self.cosine(ref)
        )

    def cosine(self, ref: NeuronRef) -> float | None:
        if self.comparison is not None and (ref.layer, ref.neuron) in self.comparison.changed_index:
            return self.comparison.changed_index[(ref.layer, ref.neuron)].cosine
        if self.same_model:
            return 1.0
        store = self.browsing.store
        if self.readers is None or store is None:
            return None
        n, hidden = store.neurons, int(store.meta.get("hidden", 0))
        try:
            a, b = (r.vectors(ref.layer, self.browsing.view, [ref.neuron], n, hidden) for r in self.readers)
        except (OSError, ValueError):
            return None
        if a is None or b is None:
            return None
        denom = float((a[0] @ a[0]) ** 0.5 * (b[0] @ b[0]) ** 0.5)
        return float(a[0] @ b[0]) / denom if denom else None

    # -- changed only ------------------------------------------------------------------------------
    def hide_changed(self) -> None:
        """The filter takes the list's place."""
        self.changed_table.display = False

    def action_changed_only(self) -> None:
        table = self.changed_table
        table.display = not table.display
        if table.display:
            self.screen.query_one("#results").display = False
            if self.comparison is None:
                self.notify("the comparison is not ready yet", severity="warning")
            table.focus()
            if table.row_count:
                table.move_cursor(row=0)
                self.walk_to(0)
        else:
            self.screen.query_one("#tree").focus()

    def action_walk_changed(self, step: int) -> None:
        changed = self.changed_table.changed
        if not changed:
            self.notify("no changed neurons (yet)", severity="warning")
            return
        refs = [c.ref for c in changed]
        current = self.browsing.current
        here = refs.index(current) if current in refs else -1
        row = (here + step) % len(refs) if here >= 0 else (0 if step > 0 else len(refs) - 1)
        if self.changed_table.display:
            self.changed_table.move_cursor(row=row)
        self.walk_to(row)

    def walk_to(self, row: int) -> None:
        changed = self.changed_table.changed
        if 0 <= row < len(changed):
            self.goto(changed[row].ref, focus_tree=False)

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        if event.data_table.id == "changed" and self.changed_table.display:
            self.walk_to(event.cursor_row)

    # -- the filter searches both models ---------------------------------------------------------
    def search(self, query: str, match: str) -> tuple[list[Hit], list[str]]:
        """The filter's query on both caches, merged (in the filter's worker thread)."""
        base = search_cache(self.browsing.path, query, match)
        other = [] if self.same_model else search_cache(self.other_path, query, match)
        return merge_hits(base, other)
