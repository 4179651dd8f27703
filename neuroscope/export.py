"""Bulk export of every neuron's top-k with its label: jsonl, csv or parquet (pyarrow, an optional extra).

Rows are streamed unit by unit (layer x view x direction), so memory stays one unit's records. A file is
written next to its final name and renamed into place at the end: a failed or interrupted export leaves no
partial file.
"""

from __future__ import annotations

import collections
import csv
import io
import itertools
import json
import multiprocessing as mp
import os
import signal
import sys
import threading
from concurrent.futures import Future, ProcessPoolExecutor
from contextlib import ExitStack, contextmanager
from pathlib import Path

import numpy as np

from .cache.labels import Labels
from .choices import DIRECTIONS
from .errors import UsageError

FORMATS = ("jsonl", "csv", "parquet")


def check_out(out: str | None, fmt: str) -> Path | None:
    """The output path, checked before any work: its folder exists and is writable, it is not a folder."""
    if fmt not in FORMATS:
        raise UsageError(f"unknown format {fmt!r}: choose {', '.join(FORMATS)}")
    if out is None or out == "-":
        if fmt == "parquet":
            raise UsageError("parquet is binary: give --out PATH")
        return None
    path = Path(out).expanduser()
    if path.is_dir():
        raise UsageError(f"--out {out} is a folder, not a file")
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise UsageError(f"cannot write {out}: no folder {parent}")
    if not os.access(parent, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise UsageError(f"cannot write {out}: permission denied")
    if fmt == "parquet":
        try:
            import pyarrow  # noqa: F401
        except ImportError:
            raise UsageError("parquet needs pyarrow: pip install 'neuroscope[export]' (or pyarrow)") from None
    return path


def units(store, views):
    labels = Labels(store)
    for layer in range(store.layers):
        for view in views:
            for direction in DIRECTIONS:
                tops, lab = store.tops(layer, view, direction), labels.unit(layer, view, direction)
                if tops is not None and lab is not None:
                    yield layer, view, direction, tops, lab


def export(store, fmt: str, out: Path | None, views=None, progress=None, workers: int | None = None) -> int:
    """Write every decoded neuron-direction of ``views`` (default: all decoded); returns the row count.
    ``progress(done, total)`` counts rows; jsonl and csv are formatted by ``workers`` processes (default:
    one per core, up to 8, for exports of at least PARALLEL_ROWS rows) and written in order."""
    views = [v for v in (views or store.views) if v in store.decoded_views()]
    total = store.layers * len(views) * 2 * store.neurons
    if workers is None:
        workers = min(os.cpu_count() or 1, 8) if total >= PARALLEL_ROWS else 1
    tmp = None if out is None else out.with_name(f".{out.name}.{os.getpid()}.partial")
    progress = progress or (lambda done, total: None)
    try:
        if fmt == "parquet":
            count = _parquet(store, tmp, views, Labels(store), progress, total)
        else:
            if tmp is None:
                sys.stdout.flush()
            handle = _stdout_bytes() if tmp is None else open(tmp, "wb")  # workers send UTF-8 bytes
            try:
                if fmt == "csv":
                    k = store.top_k
                    fields = [f"{field}_{r}" for r in range(1, k + 1) for field in ("token_id", "token", "prob")]
                    head = io.StringIO()
                    csv.writer(head).writerow(["layer", "neuron", "view", "direction", "label", "label_mass", *fields])
                    handle.write(head.getvalue().encode())
                count = 0
                for text, rows in _rendered(store, fmt, views, workers):
                    handle.write(text)
                    count += rows
                    progress(count, total)
            finally:
                if tmp is not None:
                    handle.close()
        if tmp is not None and out is not None:  # both or neither: tmp is made from out
            _durable_replace(tmp, out)
        return count
    except BaseException:
        if tmp is not None and tmp.exists():
            tmp.unlink()
        raise


def _fsync(path, flags: int = os.O_RDONLY) -> None:
    fd = os.open(path, flags)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _durable_replace(tmp: Path, out: Path) -> None:
    """Rename the finished file into place with its bytes on disk first, so a power cut leaves the old file
    or the whole new one, never a short one under the final name; then the folder's entry (best effort:
    some file systems cannot sync a folder)."""
    _fsync(tmp)
    os.replace(tmp, out)
    try:
        _fsync(out.parent, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        pass


def _stdout_bytes():
    """stdout as a byte sink (a captured stdout, in tests or a notebook, may have no byte buffer)."""
    buffer = getattr(sys.stdout, "buffer", None)
    if buffer is not None:
        return buffer
    return type(
        "TextSink",
        (),
        {
            "write": staticmethod(lambda data: sys.stdout.write(data.decode("utf-8"))),
            "close": staticmethod(lambda: None),
        },
    )()


PARALLEL_ROWS = 200_000
STOP_SIGNALS = {signal.SIGINT, signal.SIGTERM}
_WORKER: dict = {}


def _quote(fmt: str):
    return json_text if fmt == "jsonl" else csv_cell


def json_text(value) -> str:
    """``value`` as JSON, UTF-8 as it is except the line breaks JSON leaves raw (NEL U+0085, and the
    separators U+2028/U+2029), escaped so that every line reader (Python's str.splitlines, JavaScript
    before ES2019) sees one record per line. Used for jsonl export and every --json line."""
    out = json.dumps(value, ensure_ascii=False)
    return out.translate(_LINE_BREAKS) if any(c in out for c in "\x85\u2028\u2029") else out


_LINE_BREAKS = {0x85: "\\u0085", 0x2028: "\\u2028", 0x2029: "\\u2029"}


def _state(store, fmt: str) -> dict:
    """What formatting needs: the cache, every token's text encoded once."""
    vocab = int(store.meta["vocab"])
    texts = store.token_texts(range(vocab))
    quote = _quote(fmt)
    return dict(
        store=store,
        labels=Labels(store),
        fmt=fmt,
        quote=quote,
        enc=np.array([quote(texts[i]) for i in range(vocab)], dtype=object),
    )


def _start(path: str, fmt: str) -> None:
    for sig in STOP_SIGNALS:  # in a worker process: Ctrl-C and SIGTERM are the
        signal.signal(sig, signal.SIG_IGN)  # parent's (it cleans up and ends the pool)
    from .cache.store import Store

    _WORKER.update(_state(Store(path, readonly=True), fmt))  # a read-only connection of its own


def _render(unit, state: dict | None = None) -> tuple[bytes, int]:
    state = state or _WORKER
    layer, view, direction = unit
    store, labels, quote = state["store"], state["labels"], state["quote"]
    tops, lab = store.tops(layer, view, direction), labels.unit(layer, view, direction)
    if tops is None or lab is None:
        return b"", 0
    keys = {key: quote(text) for key, text in _key_texts(labels, lab).items()}
    keys[0] = "null" if state["fmt"] == "jsonl" else ""  # no label above the floor
    ids, probs = tops
    return block(
        state["fmt"], layer, view, direction, ids, probs, [keys[key] for key in lab[0].tolist()], lab[1], state["enc"]
    ).encode("utf-8"), len(tops[0])


@contextmanager
def _signals_held():
    """Around spawning the workers: Ctrl-C is ignored (a disposition exec keeps, so Python never installs
    its Ctrl-C handler in them: a Ctrl-C to the terminal's process group reaches only this process, however
    early it comes), and this thread blocks Ctrl-C and SIGTERM until the pool is whole, then restores both.
    Setting SIG_IGN would discard a Ctrl-C already pending here, so that one is raised again. Other threads
    (numpy's BLAS pool) do not block them: there a SIGTERM still stops the command at once, and a Ctrl-C in
    the milliseconds of the ignore is dropped (a second one works). Outside the main thread no handler can
    be changed: only the blocking applies."""
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    handler, early = None, False
    try:
        if threading.current_thread() is threading.main_thread():
            handler = signal.getsignal(signal.SIGINT)  # None: set outside Python, cannot be restored
            if handler is not None:
                early = signal.SIGINT in signal.sigpending()
                signal.signal(signal.SIGINT, signal.SIG_IGN)
        yield
    finally:
        if handler is not None:
            signal.signal(signal.SIGINT, handler)
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        if early:
            signal.raise_signal(signal.SIGINT)


def _rendered(store, fmt: str, views, workers: int):
    """(UTF-8 text, rows) of every unit's direction, in order; by a pool of processes when ``workers`` > 1."""
    todo = [(layer, view, d) for layer in range(store.layers) for view in views for d in DIRECTIONS]
    if workers <= 1:
        state = _state(store, fmt)
        yield from (_render(unit, state) for unit in todo)
        return
    rest = iter(todo)
    pending: collections.deque[Future[tuple[bytes, int]]] = collections.deque()  # at most 2 x workers in flight
    with ExitStack() as stack:
        with _signals_held():
            pool = stack.enter_context(
                ProcessPoolExecutor(
                    workers, mp_context=mp.get_context("spawn"), initializer=_start, initargs=(str(store.path), fmt)
                )
            )
            stack.callback(lambda: [future.cancel() for future in pending])  # first, on any way out
            pending.extend(pool.submit(_render, unit) for unit in itertools.islice(rest, 2 * workers))
        for unit in rest:
            yield pending.popleft().result()
            pending.append(pool.submit(_render, unit))
        while pending:
            yield pending.popleft().result()


def _key_texts(labels, lab) -> dict[int, str]:
    return labels.keys(np.unique(lab[0]).tolist())


def csv_cell(text: str) -> str:
    """One field as csv.writer writes it inside a row (QUOTE_MINIMAL)."""
    buf = io.StringIO()
    csv.writer(buf).writerow([text, ""])  # the default "\r\n" terminator: \r and \n get quoted
    return buf.getvalue()[:-3]


def block(
    fmt: str,
    layer: int,
    view: str,
    direction: str,
    ids: np.ndarray,
    probs: np.ndarray,
    labels: list[str],
    masses: np.ndarray,
    enc: np.ndarray,
) -> str:
    """The rows of one unit's direction as text: one %-format over the whole unit (no per-row Python).
    ``enc`` holds every token's text already encoded for ``fmt`` (JSON string or CSV cell); floats are
    written with 9 significant digits, which give back every float32 exactly, always with a point (JSON
    readers see floats)."""
    n, k = ids.shape
    cells = np.empty((n, 3 + 3 * k), dtype=object)
    cells[:, 0] = range(n)
    cells[:, 1] = labels
    cells[:, 2] = masses.tolist()
    cells[:, 3::3] = ids.tolist()
    cells[:, 4::3] = enc[ids]
    cells[:, 5::3] = probs.tolist()
    if fmt == "jsonl":
        top = ", ".join(['{"token_id": %d, "token": %s, "prob": %#.9g}'] * k)
        row = (
            f'{{"layer": {layer}, "neuron": %d, "view": "{view}", "direction": "{direction}", '
            f'"label": %s, "label_mass": %#.9g, "top": [{top}]}}\n'
        )
    else:
        row = f"{layer},%d,{view},{direction},%s,%#.9g," + ",".join(["%d,%s,%#.9g"] * k) + "\r\n"
    return (row * n) % tuple(cells.ravel().tolist())


def _parquet(store, path, views, labels, progress, total) -> int:
    import pyarrow as pa
    import pyarrow.parquet as pq

    texts = store.token_texts(range(int(store.meta["vocab"])))
    texts = [texts[i] for i in range(len(texts))]

    top_type = pa.list_(pa.struct([("token_id", pa.int32()), ("token", pa.string()), ("prob", pa.float32())]))
    schema = pa.schema(
        [
            ("layer", pa.int32()),
            ("neuron", pa.int32()),
            ("view", pa.string()),
            ("direction", pa.string()),
            ("label", pa.string()),
            ("label_mass", pa.float32()),
            ("top", top_type),
        ]
    )
    vocab = pa.array(texts, pa.string())
    count = 0
    with pq.ParquetWriter(str(path), schema) as writer:
        for layer, view, direction, (ids, probs), lab in units(store, views):
            n, k = ids.shape
            keys = _key_texts(labels, lab)
            structs = pa.StructArray.from_arrays(
                [pa.array(ids.ravel(), pa.int32()), vocab.take(pa.array(ids.ravel())), pa.array(probs.ravel())],
                names=["token_id", "token", "prob"],
            )
            top = pa.ListArray.from_arrays(pa.array(np.arange(0, n * k + 1, k, dtype=np.int32)), structs)
            table = pa.table(
                {
                    "layer": pa.array(np.full(n, layer, np.int32)),
                    "neuron": pa.array(np.arange(n, dtype=np.int32)),
                    "view": pa.array([view] * n),
                    "direction": pa.array([direction] * n),
                    "label": pa.array([keys[key] if key else None for key in lab[0].tolist()], pa.string()),
                    "label_mass": pa.array(lab[1]),
                    "top": top,
                },
                schema=schema,
            )
            writer.write_table(table)
            count += n
            progress(count, total)
    return count


def export_model(model, fmt: str = "jsonl", out=None, views=None, workers: int | None = 1) -> int:
    """The API's export: ``out`` and ``views`` checked before any work, the model decoded when needed, a
    progress bar while the rows are written."""
    path = check_out(out, fmt)  # before any work
    if views:
        model.info.check_views(views)
    with model.store() as store:
        progress, close = model._progress("export")
        try:
            return export(store, fmt, path, views, progress=progress, workers=workers)
        finally:
            close()
