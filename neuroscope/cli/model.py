"""The CLI's commands: thin layers over the notebook API (neuroscope.api), printing what it returns.
Cache-only paths (search/show on a cached model, models) never import torch.

Errors reach the user by type: a NeuroscopeError is one line and exit code 2; anything else is a bug and
keeps its traceback.
"""
from __future__ import annotations

import signal
import sqlite3
import sys
import threading
import time
from contextlib import contextmanager

from .. import api
from ..cache.catalog import mark_used, most_recent
from ..cache.store import translate
from ..concepts import Label
from ..core.refs import NeuronRef
from ..errors import NeuroscopeError, UsageError, one_line
from .output import _emit_json, fmt_prob, note, open_model


class CommandError(UsageError):
    """A problem with the user's input: printed as one line, exit code 2."""


def handlers() -> dict:
    return {"decode": cmd_decode, "show": cmd_show, "search": cmd_search, "models": cmd_models, "tui": cmd_tui,
            "clamp": _lazy("clamp", "cmd_clamp"), "compare": _lazy("compare", "cmd_compare"),
            "trace": _lazy("behaviour", "cmd_trace"), "examples": _lazy("behaviour", "cmd_examples"),
            "agreement": _lazy("behaviour", "cmd_agreement"), "top": _lazy("concepts", "cmd_top"),
            "concept": _lazy("concepts", "cmd_concept"), "export": _lazy("concepts", "cmd_export")}


RESUME = "interrupted; every finished layer is saved, run the same command again to resume"
INTERRUPTED = {"examples": "interrupted; the examples up to the last commit (at most 30 s ago) are saved, run the same "
                           "command again to resume",
               "export": "interrupted; no file was written (any decode it started keeps its finished layers)",
               "clamp": "interrupted; no result was measured (a --save-preset, if given, is already saved)"}


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


def dispatch(args, table: dict | None = None) -> int:
    """Run one parsed command; ``table`` replaces the command handlers (the fuzz tests run `tui` up to the
    point where the app would start)."""
    handler = (table or handlers())[args.command]
    try:
        return handler(args) or 0
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


def _lazy(module: str, name: str):
    """A command implemented in its own module, imported only when it runs."""
    def run(args):
        import importlib

        return getattr(importlib.import_module(f"{__package__}.{module}"), name)(args)
    return run


def user_message(exc: BaseException) -> str | None:
    """The one line a user sees for an error they can act on, or None for a bug (which keeps its traceback)."""
    if isinstance(exc, NeuroscopeError):
        return str(exc)
    if isinstance(exc, sqlite3.Error):
        typed = translate(exc)
        return None if typed is None else str(typed)
    if isinstance(exc, MemoryError):
        return "out of memory"
    if isinstance(exc, OSError) and exc.errno is not None:   # the disk or the OS said no: not a bug of ours
        return f"{exc.strerror or type(exc).__name__}{f': {exc.filename}' if exc.filename else ''}"
    return None


def cmd_decode(args) -> int:
    model = open_model(args)
    result = model.decode(views=args.views, top_k=args.top_k, rebuild=args.rebuild, devices=args.devices)
    if result is None:  # a torchrun rank other than 0: rank 0 reports
        return 0
    summary = {"model": model.name, "views": result.views, "neurons": result.neurons,
               "units_decoded": result.decoded_units, "seconds": round(result.seconds, 3)}
    if args.json:
        _emit_json(summary, model)
    else:
        what = "decoded" if result.decoded_units else "already cached"
        print(f"{model.name}: {result.neurons:,} neurons x {'/'.join(result.views)} {what} "
              f"in {result.seconds:.1f} s{' on ' + result.device if result.device else ''} -> {result.path}")
    return 0


def cmd_show(args) -> int:
    ref = NeuronRef.parse(args.neuron)
    model = open_model(args)
    neuron = model.neuron(ref)              # out of range: one line, nothing loaded
    if args.examples:                       # none cached: one line before a decode that --examples cannot use
        from ..behaviour import require_examples

        require_examples(model)
    top = neuron.top(args.view, args.direction)
    label = neuron.label(args.view, args.direction)
    shown = None
    if args.examples:
        from .behaviour import examples_of

        shown = examples_of(neuron, args.context)
    if args.json:
        out = {"model": model.name, "layer": ref.layer, "neuron": ref.neuron, "view": args.view,
               "direction": args.direction, "label": label.label if label else None,
               "label_mass": label.mass if label else None,
               "top": [{"token_id": t.token_id, "token": t.token, "prob": t.prob} for t in top]}
        _emit_json(out if shown is None else {**out, "examples": shown}, model)
        return 0
    from ..cache.labels import LABEL_FLOOR
    from ..cache.words import quoted

    print(f"{model.name} {ref} {args.view} {args.direction}" + (
        f"  label: {label} (entropy {label.entropy:.2f})" if label else
        f"  label: none (no word holds {LABEL_FLOOR:.0%} of its top-{len(top)} mass)"))
    for t in top:
        bar = "█" * max(1, round(t.prob * 30)) if t.prob >= 0.005 else "·"
        print(f"  {t.rank + 1:>3}  {quoted(t.token):<20} {fmt_prob(t.prob):>8}  {bar}")
    if shown is not None:
        from .behaviour import print_examples

        print_examples(shown)
    return 0


def cmd_search(args) -> int:
    if not args.text.strip():
        raise CommandError("TEXT is empty: give a token to search for, e.g. dog")
    model = open_model(args)
    hits = model.search(args.text, view=args.view, direction=args.direction, max_rank=args.max_rank,
                        match=args.match, limit=args.limit)
    matched = model.match_word(args.text) if args.match in ("word", "label") else None
    if args.json:
        out = {"model": model.name, "query": args.text, "hits": [h.as_dict() for h in hits]}
        _emit_json(out if matched is None else {**out, "matched": matched.as_dict()}, model)
        return 0
    if matched is not None:
        note(matched.describe())
    if not hits:
        print(f"no neuron of {model.name} is labelled '{args.text}'" if args.match == "label" else
              f"no neuron of {model.name} has a token matching '{args.text}' ({args.match}) "
              f"within its top {args.max_rank}")
        return 0
    from ..cache.words import quoted

    print(f"{'neuron':<12} {'view':<5} {'dir':<4} {'rank':>4}  {'token':<18} {'prob':>8}  label")
    for h in hits:
        ref = str(NeuronRef(h.layer, h.neuron))
        label = "—" if h.label is None else str(Label(h.label, h.label_mass, h.label_count, 0.0))
        print(f"{ref:<12} {h.view:<5} {h.direction:<4} {h.rank + 1:>4}  "
              f"{quoted(h.token):<18} {fmt_prob(h.prob):>8}  {label}")
    return 0


def cmd_models(args) -> int:
    rows = api.models(args.cache_dir, note=note)
    if args.json:
        _emit_json(rows.as_dicts())
        return 0
    if not rows:
        print("no decoded models yet: try `neuroscope decode demo`")
        return 0
    print(f"{'model':<28} {'layers x neurons':<18} {'views':<14} {'complete':<9} last used")
    for r in rows:
        used = time.strftime("%Y-%m-%d %H:%M", time.localtime(r.last_used)) if r.last_used else "-"
        shape = f"{r.layers} x {r.neurons_per_layer}"
        print(f"{r.model:<28} {shape:<18} {','.join(r.views) or '-':<14} {'yes' if r.complete else 'no':<9} {used}")
    return 0


def prepare_tui(args):
    """Everything `neuroscope tui` checks before the app starts: (model, other model or None)."""
    from ..core.compare import precheck
    from ..tui.app import NeuroscopeApp

    config = getattr(args, "config", None)
    unknown = sorted(set(config.keymap) - set(NeuroscopeApp.bindings())) if config else []
    if unknown:
        raise CommandError(f"{config.path}: [keymap] names no binding {unknown[0]!r}; the ids are in "
                           f"`neuroscope tui`'s help (?) and README")
    args.model = args.model or most_recent(args.cache_dir) or "demo"
    model = open_model(args)              # a bad MODEL, --device or --dtype fails here, before the app starts
    other = None
    if getattr(args, "compare", None):
        other = open_model(args, args.compare)
        precheck(model.info, other.info)  # different shapes or vocabularies: one line, not an app that fails
    elif not model.path.exists():
        _ = model.info                    # a damaged or unsupported model: one line, not an app that fails
    if model.path.exists():
        from ..concepts import ensure_labels
        from ..errors import CacheError

        try:
            ensure_labels(model.path, note)   # a cache made before labels: labelled once, announced here
        except CacheError:
            pass                              # a damaged or busy cache: the app says so and offers a rebuild
    return model, other


def cmd_tui(args) -> int:
    model, other = prepare_tui(args)
    mark_used(model.source.name, model.source.source, model.source.fingerprint, args.cache_dir)
    from ..tui.app import run_app

    return run_app(model.source, args, other.source if other else None) or 0


__all__ = ["CommandError", "dispatch", "note", "open_model"]
