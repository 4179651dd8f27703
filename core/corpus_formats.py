"""The tabular corpora: a text column of a .jsonl, .parquet or .csv file, of a folder written by
``datasets.Dataset.save_to_disk``, or of a Hugging Face dataset ``name[:config][@split]``.

Each kind has a check (``check_*``: what the user named is there and holds the column, read from the header
only: the parquet schema, the csv header row, the first jsonl line, the dataset's features), run before
any model loads, and a reader (``read_*``) that streams the column's strings: pyarrow's ``iter_batches``,
the csv module, line by line, the ``datasets`` library's memory-mapped or streamed rows. A reader is a
generator, so reading stops as soon as the examples have their tokens: a 10 GB parquet is never read whole.
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import re
import socket
import sys
import urllib.parse
from pathlib import Path
from typing import Generator, Iterator

from ..errors import UsageError, first_line

DEFAULT_COLUMN = "text"
DATA_SUFFIXES = (".jsonl", ".parquet", ".csv")
EXTRA = "pip install 'neuroscope[corpora]'"  # the extra that brings the datasets library
BATCH_ROWS = 64
# name[:config][@split]: a hub id ("wikitext", "owner/name"), a config and a split made of the hub's characters
HUB_ID = re.compile(r"^(?P<name>[A-Za-z0-9][\w.-]*(?:/[\w.-]+)?)(?::(?P<config>[\w.-]+))?(?:@(?P<split>[\w.-]+))?$")


def _shown(names) -> str:
    names = list(names)
    return ", ".join(names) if names else "none"


def _missing(what: str, column: str, names) -> UsageError:
    return UsageError(f"{what} has no column {column!r} (its columns: {_shown(names)}): choose one with --text-column")


# -- jsonl -------------------------------------------------------------------------------------------------
def _jsonl_records(path: Path) -> Iterator[tuple[int, object]]:
    with open(path, encoding="utf-8", errors="strict") as handle:
        number = 0
        try:
            for number, line in enumerate(handle, 1):
                if not line.strip():
                    continue
                try:
                    yield number, json.loads(line)
                except ValueError:
                    raise UsageError(f"{path} line {number} is not JSON") from None
        except UnicodeDecodeError as exc:
            raise UsageError(f"corpus file {path} is not UTF-8 text (line {number + 1}: {first_line(exc)})") from None


def check_jsonl(path: Path, column: str) -> None:
    for number, record in _jsonl_records(path):
        if not isinstance(record, dict):
            raise UsageError(f"{path} line {number} is not a JSON object")
        if column not in record:
            raise _missing(f"{path} (line {number})", column, record)
        return
    raise UsageError(f"corpus file {path} holds no JSON lines")


def read_jsonl(path: Path, column: str) -> Iterator[str]:
    for number, record in _jsonl_records(path):
        text = record.get(column) if isinstance(record, dict) else None
        if text is None and isinstance(record, dict) and column in record:
            continue  # a null text: no document
        if not isinstance(text, str):
            raise UsageError(f"{path} line {number} has no {column!r} string")
        yield text


# -- parquet -----------------------------------------------------------------------------------------------
def _parquet(path: Path):
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise UsageError(f"the parquet corpus {path} needs pyarrow: {EXTRA} (or pip install pyarrow)") from None

    try:
        return pq.ParquetFile(path, pre_buffer=False)  # pre-buffering would read every row group at the start
    except Exception as exc:
        raise UsageError(f"corpus file {path} is not a parquet file ({first_line(exc)})") from None


def _check_string(what: str, column: str, kind) -> None:
    import pyarrow as pa

    if not (
        pa.types.is_string(kind)
        or pa.types.is_large_string(kind)
        or getattr(pa.types, "is_string_view", lambda _t: False)(kind)
    ):
        raise UsageError(f"column {column!r} of {what} holds {kind}, not text: choose another with --text-column")


def check_parquet(path: Path, column: str) -> None:
    schema = _parquet(path).schema_arrow  # the footer only
    if column not in schema.names:
        raise _missing(str(path), column, schema.names)
    _check_string(str(path), column, schema.field(column).type)


def read_parquet(path: Path, column: str) -> Iterator[str]:
    for batch in _parquet(path).iter_batches(batch_size=BATCH_ROWS, columns=[column]):
        for text in batch.column(0).to_pylist():
            if text is not None:
                yield text


# -- csv ---------------------------------------------------------------------------------------------------
def _csv_rows(path: Path) -> Generator[list[str], None, None]:  # a generator: check_csv closes it
    csv.field_size_limit(max(csv.field_size_limit(), min(sys.maxsize, 2**31 - 1)))  # a document is one field
    try:
        with open(path, encoding="utf-8", newline="") as handle:
            yield from csv.reader(handle)
    except UnicodeDecodeError as exc:
        raise UsageError(f"corpus file {path} is not UTF-8 text ({first_line(exc)})") from None
    except csv.Error as exc:
        raise UsageError(f"corpus file {path} is not a readable csv file ({first_line(exc)})") from None


def _csv_index(path: Path, header: list[str] | None, column: str) -> int:
    if not header:
        raise UsageError(f"corpus file {path} has no header row")
    if column not in header:
        raise _missing(str(path), column, header)
    return header.index(column)


def check_csv(path: Path, column: str) -> None:
    rows = _csv_rows(path)
    _csv_index(path, next(rows, None), column)
    rows.close()


def read_csv(path: Path, column: str) -> Iterator[str]:
    rows = _csv_rows(path)
    index = _csv_index(path, next(rows, None), column)
    for row in rows:
        if index < len(row):
            yield row[index]


CHECKS = {".jsonl": check_jsonl, ".parquet": check_parquet, ".csv": check_csv}
READERS = {".jsonl": read_jsonl, ".parquet": read_parquet, ".csv": read_csv}


# -- the datasets library: save_to_disk folders and hub ids ------------------------------------------------
def is_saved_dataset(folder: Path) -> bool:
    """A folder written by ``Dataset.save_to_disk`` (state.json) or ``DatasetDict.save_to_disk``."""
    return (folder / "state.json").is_file() or (folder / "dataset_dict.json").is_file()


def _datasets(what: str):
    try:
        import datasets
    except ImportError:
        raise UsageError(f"{what} needs the datasets library: {EXTRA} (or pip install datasets)") from None

    return datasets


@contextlib.contextmanager
def _quiet(datasets, offline: bool = False):
    """No progress bars, no "using the latest cached version" or retry warnings on stderr; with ``offline``,
    datasets and the hub offline. Everything restored afterwards (the library's settings stay the user's)."""
    import huggingface_hub.constants
    from huggingface_hub.utils import logging as hub_logging

    saved = (
        datasets.config.HF_HUB_OFFLINE,
        huggingface_hub.constants.HF_HUB_OFFLINE,
        hub_logging.get_verbosity(),
        datasets.logging.get_verbosity(),
        not datasets.utils.are_progress_bars_disabled(),
    )
    hub_logging.set_verbosity_error()
    datasets.logging.set_verbosity_error()
    datasets.utils.disable_progress_bars()
    if offline:
        datasets.config.HF_HUB_OFFLINE = huggingface_hub.constants.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        datasets.config.HF_HUB_OFFLINE, huggingface_hub.constants.HF_HUB_OFFLINE = saved[:2]
        hub_logging.set_verbosity(saved[2])
        datasets.logging.set_verbosity(saved[3])
        if saved[4]:
            datasets.utils.enable_progress_bars()


def _pick_split(what: str, base: str, splits, split: str | None) -> str:
    splits = list(splits)
    if split is None:
        split = "train" if "train" in splits or len(splits) != 1 else splits[0]
    if split not in splits:
        raise UsageError(f"{what} has no split {split!r} (its splits: {_shown(splits)}): name one as {base}@SPLIT")
    return split


def open_saved(folder: Path, column: str, split: str | None) -> tuple[object, dict]:
    """The saved dataset (one split of a DatasetDict), checked, and what identifies it."""
    datasets = _datasets(f"the saved dataset {folder}")
    try:
        with _quiet(datasets):
            data = datasets.load_from_disk(str(folder))
    except Exception as exc:
        raise UsageError(f"{folder} is not a readable saved dataset ({first_line(exc)})") from None
    if isinstance(data, datasets.DatasetDict):
        split = _pick_split(f"the saved dataset {folder}", str(folder), data.keys(), split)
        data = data[split]
    elif split is not None:
        raise UsageError(f"{folder} is one saved dataset, without splits: drop @{split}")
    if column not in data.column_names:
        raise _missing(f"the saved dataset {folder}", column, data.column_names)
    _check_string(f"the saved dataset {folder}", column, data.features.arrow_schema.field(column).type)
    return data, {"split": split, "fingerprint": getattr(data, "_fingerprint", None), "rows": len(data)}


def read_rows(data, column: str) -> Iterator[str]:
    """A column's strings from a datasets Dataset (memory-mapped) or IterableDataset (streamed), in order."""
    for batch in data.select_columns([column]).iter(batch_size=BATCH_ROWS):
        for text in batch[column]:
            if isinstance(text, str):
                yield text


def parse_hub_id(spec: str) -> tuple[str, str | None, str] | None:
    """``name[:config][@split]`` as (name, config, split); None when ``spec`` is not of that form."""
    match = HUB_ID.match(spec)
    if not match or match["name"].endswith(tuple(DATA_SUFFIXES + (".txt", ".md"))):
        return None
    return match["name"], match["config"], match["split"] or "train"


def _unreachable(endpoint: str) -> str | None:
    """Why the hub cannot be reached (a 3 s connect to its host), or None: reachable, or behind a proxy that
    this check cannot see through."""
    if any(os.environ.get(v) for v in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")):
        return None
    url = urllib.parse.urlsplit(endpoint)
    try:
        socket.create_connection((url.hostname, url.port or (443 if url.scheme == "https" else 80)), 3).close()
    except OSError as exc:
        return f"{url.hostname}: {exc.strerror or first_line(exc)}"
    return None


def open_hub(spec: str, name: str, config: str | None, split: str, column: str) -> tuple[object, dict]:
    """A Hugging Face dataset's split, checked: streamed when online, the local cache's copy offline
    (HF_HUB_OFFLINE=1 or HF_DATASETS_OFFLINE=1, or the hub unreachable), and what identifies it (config,
    split, revision)."""
    import huggingface_hub.constants

    datasets = _datasets(f"the Hugging Face dataset {spec}")
    offline = bool(datasets.config.HF_HUB_OFFLINE)
    down = None if offline else _unreachable(huggingface_hub.constants.ENDPOINT)
    where = (
        "the local Hugging Face cache (offline)"
        if offline
        else f"the local Hugging Face cache (the hub is unreachable: {down})"
        if down
        else "the Hugging Face hub"
    )
    try:
        with _quiet(datasets, offline or down is not None):
            builder = datasets.load_dataset_builder(name, config)
            split = _pick_split(
                f"the dataset {spec}",
                name + (f":{config}" if config else ""),
                (builder.info.splits or {split: None}).keys(),
                split,
            )
            if offline or down:
                data = builder.as_dataset(split=split)
            else:
                data = builder.as_streaming_dataset(split=split)
    except UsageError:
        raise
    except Exception as exc:
        if isinstance(exc, ConnectionError) and (offline or down):  # the hub was not asked: not cached
            why = "HF_HUB_OFFLINE or HF_DATASETS_OFFLINE is set" if offline else f"the hub is unreachable: {down}"
            raise UsageError(
                f"cannot read the dataset {spec}: it is not in the local Hugging Face cache ({why}); "
                f"run it once online (nor is it a file or folder here)"
            ) from None
        hint = "" if offline or down else "; offline? set HF_DATASETS_OFFLINE=1 to read the local cache"
        raise UsageError(f"cannot read the dataset {spec} from {where} ({first_line(exc)}){hint}") from None
    streamed = not (offline or down)
    features = getattr(data, "features", None) or builder.info.features
    names = list(features) if features else None
    if names is None:  # a stream of unknown features: its first row says
        try:
            names = list(next(iter(data.take(1))))
        except Exception as exc:
            raise UsageError(f"cannot read the dataset {spec} from {where} ({first_line(exc)})") from None
    if column not in names:
        raise _missing(f"the dataset {spec}", column, names)
    return data, {
        "dataset": name,
        "config": builder.config.name,
        "split": split,
        "revision": getattr(builder, "hash", None),
        "streamed": streamed,
    }
