"""The command line: ``main(argv)`` is the `neuroscope` console script (and ``python -m neuroscope``).

parser.py builds the parser from the command groups it lists in GROUPS (model, clamp, compare, behaviour,
concepts, app: one module each, with its options and the functions that run them); errors.py runs the
chosen command and maps what it raises to one line and an exit code; output.py is what commands print
through. argparse only: the work is the notebook API's (neuroscope.api) and core/cache/tui's.
"""

from __future__ import annotations

import sys

from .errors import dispatch, sigterm_stops
from .parser import parse


def main(argv: list[str] | None = None) -> int:
    args = parse(list(sys.argv[1:] if argv is None else argv))
    if args.command == "tui":
        return dispatch(args)
    with sigterm_stops():
        return dispatch(args)


__all__ = ["main", "parse"]
