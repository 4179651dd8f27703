"""Running a command: errors reach the user by type (a NeuroscopeError is one line and exit code 2; anything
else is a bug and keeps its traceback), Ctrl-C and SIGTERM stop a command with its finished work kept."""

from __future__ import annotations

import signal
import sqlite3
import sys
import threading
from contextlib import contextmanager

from ..cache.store import translate
from ..errors import NeuroscopeError, UsageError, one_line
from .output import note


class CommandError(UsageError):
    """A problem with the user's input: printed as one line, exit code 2."""


RESUME = "interrupted; every finished layer is saved, run the same command again to resume"
INTERRUPTED = {
    "examples": "interrupted; the examples up to the last commit (at most 30 s ago) are saved, run the same "
    "command again to resume",
    "export": "interrupted; no file was written (any decode it started keeps its finished layers)",
    "clamp": "interrupted; no result was measured (a --save-preset, if given, is already saved)",
}


class Terminated(KeyboardInterrupt):
    """SIGTERM (a `kill`, a job scheduler, a closing SSH session's shell), raised in the main thread like
    Ctrl-C so that the same clean-up runs: finished work kept, no partial file; exit code 143."""


def _terminate(_signum, _frame) -> None:
    raise Terminated()


@contextmanager
def sigterm_stops():
    """While a CLI command runs, SIGTERM stops it the way Ctrl-C does (the app keeps Textual's handling);
    the handler that was there before is put back after. Only the main thread can set handlers: elsewhere
    (a program calling cli.main from a thread) nothing changes."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    before = signal.signal(signal.SIGTERM, _terminate)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL if before is None else before)


def dispatch(args) -> int:
    """Run one parsed command (``args.run``, set by its group's register), mapping what it raises to the
    user's exit code and one line."""
    try:
        return args.run(args) or 0
    except KeyboardInterrupt as exc:
        note(INTERRUPTED.get(args.command, RESUME))
        return 143 if isinstance(exc, Terminated) else 130
    except BrokenPipeError:
        return 0
    except Exception as exc:
        message = user_message(exc)
        if message is None:
            raise
        sys.stderr.write(f"neuroscope {args.command}: error: {one_line(message)}\n")
        return 2


def user_message(exc: BaseException) -> str | None:
    """The one line a user sees for an error they can act on, or None for a bug (which keeps its traceback)."""
    if isinstance(exc, NeuroscopeError):
        return str(exc)
    if isinstance(exc, sqlite3.Error):
        typed = translate(exc)
        return None if typed is None else str(typed)
    if isinstance(exc, MemoryError):
        return "out of memory"
    if isinstance(exc, OSError) and exc.errno is not None:  # the disk or the OS said no: not a bug of ours
        return f"{exc.strerror or type(exc).__name__}{f': {exc.filename}' if exc.filename else ''}"
    return None
