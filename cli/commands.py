"""The CLI's commands. Cache-only paths (search/show on a cached model, models) never import torch.

What the user typed is checked against the model's headers (core.modelinfo) before any decode or load.
Errors reach the user by type: a NeuroscopeError is one line and exit code 2; anything else is a bug and
keeps its traceback.
"""
from __future__ import annotations

import json
import sqlite3
import sys
import time

from .cache.catalog import cache_path, list_caches, mark_used, most_recent
from .cache.store import Store, translate
from .core.errors import CacheError, NeuroscopeError, UsageError, one_line
from .core.refs import NeuronRef
from .core.sources import Source, resolve

DEFAULT_TOP_K = 10


class CommandError(UsageError):
    """A problem with the user's input: printed as one line, exit code 2."""


def note(message: str) -> None:
    sys.stderr.write(f"neuroscope: {message}\n")
    sys.stderr.flush()


def handlers() -> dict:
    return {"decode": cmd_decode, "show": cmd_show, "search": cmd_search, "models": cmd_models, "tui": cmd_tui,
            "clamp": _lazy("clamp_cmd", "cmd_clamp"), "compare": _lazy("compare_cmd", "cmd_compare")}


def dispatch(args, table: dict | None = None) -> int:
    """Run one parsed command; ``table`` replaces the command handlers (the fuzz tests run `tui` up to the
    point where the app would start)."""
    handler = (table or handlers())[args.command]
    try:
        return handler(args) or 0
    except KeyboardInterrupt:
        note("interrupted; every finished layer is saved, run the same command again to resume")
        return 130
    except BrokenPipeError:
        return 0
    except Exception as exc:  # noqa: BLE001 - typed user errors become one line; the rest is re-raised
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


def _emit_json(value) -> None:
    sys.stdout.write(json.dumps(value, ensure_ascii=False) + "\n")


def decode(source: Source, args, views=None, top_k: int = DEFAULT_TOP_K, info=None):
    """Decode with a progress bar on stderr (imports torch: only when the cache lacks something)."""
    from .core.options import under_torchrun
    from .core.pipeline import cached_views, ensure_decoded
    from .progress import ProgressBar

    devices = getattr(args, "devices", None)
    if devices or under_torchrun():
        from .core.distributed import decode_distributed

        note(f"decoding {source.name} ({source.source}); Ctrl-C stops, finished layers are kept")
        with ProgressBar("decode", unit="neuron-views") as bar:
            return decode_distributed(source, devices, views=views, top_k=top_k, dtype=args.dtype,
                                      cache_dir=args.cache_dir, rebuild=getattr(args, "rebuild", False),
                                      trust_remote_code=args.trust_remote_code, progress=bar, note=note)
    path = cache_path(source.name, source.source, source.fingerprint, args.cache_dir)
    rebuild = getattr(args, "rebuild", False)
    if rebuild or cached_views(path, views or [], top_k, args.dtype) is None:
        from .core.decode import pick_device

        pick_device(args.device)          # a missing GPU is one line before anything else is said
        note(f"decoding {source.name} ({source.source}); Ctrl-C stops, finished layers are kept")
    with ProgressBar("decode", unit="neuron-views") as bar:
        return ensure_decoded(source, views=views, top_k=top_k, device=args.device, dtype=args.dtype,
                              cache_dir=args.cache_dir, rebuild=rebuild, trust_remote_code=args.trust_remote_code,
                              progress=bar, note=note, info=info)


def open_decoded(args, view: str | None = None, check=None, model: str | None = None) -> tuple[Source, Store]:
    """The model's cache, decoding first when it lacks ``view`` (or any view). ``check(layers, neurons)``
    validates what the user typed: against the cache when it is there, else against the model's headers,
    before the decode starts."""
    from .core.options import check_dtype
    from .core.pipeline import cached_views

    check_dtype(args.dtype)
    source = resolve(model or args.model)
    path = cache_path(source.name, source.source, source.fingerprint, args.cache_dir)
    if _ready(path):
        with Store(path, readonly=True) as store:       # cached: check against it, no model files needed
            if view is not None and view not in store.views:
                raise CommandError(f"{store.meta.get('arch')} has no '{view}' view; it has {', '.join(store.views)}")
            if check is not None:
                check(store.layers, store.neurons)
    if cached_views(path, [view] if view else [], 1, args.dtype) is None:
        from .core.modelinfo import inspect_model

        info = inspect_model(source)
        info.check_views([view] if view else None)
        if check is not None:
            check(info.layers, info.neurons)
        decode(source, args, views=None, info=info)
    return source, Store(path, readonly=True)


def _ready(path) -> bool:
    """A usable cache is there. A corrupt one is reported (CorruptCache), never silently replaced: only
    `neuroscope decode` removes it."""
    if not path.exists():
        return False
    with Store(path, readonly=True) as store:
        return store.ready


def cmd_decode(args) -> int:
    from .core.modelinfo import inspect_model
    from .core.options import check_dtype

    check_dtype(args.dtype)
    source = resolve(args.model)
    info = inspect_model(source)
    info.check_views(args.views)
    result = decode(source, args, views=args.views, top_k=args.top_k, info=info)
    if result is None:  # a torchrun rank other than 0: rank 0 reports
        return 0
    summary = {"model": source.name, "views": result.views, "neurons": result.neurons,
               "units_decoded": result.decoded_units, "seconds": round(result.seconds, 3)}
    if args.json:
        _emit_json(summary)
    else:
        what = "decoded" if result.decoded_units else "already cached"
        print(f"{source.name}: {result.neurons:,} neurons x {'/'.join(result.views)} {what} "
              f"in {result.seconds:.1f} s{' on ' + result.device if result.device else ''} -> {result.path}")
    return 0


def cmd_show(args) -> int:
    ref = NeuronRef.parse(args.neuron)
    source, store = open_decoded(args, args.view, check=ref.check)
    with store:
        top = store.top(ref.layer, ref.neuron, args.view, args.direction)
    if args.json:
        _emit_json({"model": source.name, "layer": ref.layer, "neuron": ref.neuron, "view": args.view,
                    "direction": args.direction,
                    "top": [{"token_id": t.token_id, "token": t.token, "prob": t.prob} for t in top]})
        return 0
    print(f"{source.name} {ref} {args.view} {args.direction}")
    for t in top:
        bar = "█" * max(1, round(t.prob * 30)) if t.prob >= 0.005 else "·"
        print(f"  {t.rank + 1:>3}  {json.dumps(t.token, ensure_ascii=False):<20} {t.prob:8.4f}  {bar}")
    return 0


def _max_rank_check(max_rank: int, top_k: int) -> None:
    if max_rank > top_k:
        raise CommandError(f"--max-rank {max_rank} exceeds the cached top-{top_k}; "
                           f"decode again with --top-k {max_rank} --rebuild")


def cmd_search(args) -> int:
    if not args.text.strip():
        raise CommandError("TEXT is empty: give a token to search for, e.g. dog")
    _max_rank_check(args.max_rank, 255)
    source = resolve(args.model)
    path = cache_path(source.name, source.source, source.fingerprint, args.cache_dir)
    if not path.exists():                  # a fresh decode keeps the default top-k
        _max_rank_check(args.max_rank, DEFAULT_TOP_K)
    source, store = open_decoded(args, args.view)
    with store:
        _max_rank_check(args.max_rank, store.top_k)
        hits = store.search(args.text, match=args.match, views=[args.view] if args.view else None,
                            directions=[args.direction] if args.direction else None,
                            max_rank=args.max_rank, limit=args.limit)
    if args.json:
        _emit_json({"model": source.name, "query": args.text, "hits": [h.as_dict() for h in hits]})
        return 0
    if not hits:
        print(f"no neuron of {source.name} has a token matching '{args.text}' ({args.match}) "
              f"within its top {args.max_rank}")
        return 0
    print(f"{'neuron':<12} {'view':<5} {'dir':<4} {'rank':>4}  {'token':<18} {'prob':>8}")
    for h in hits:
        ref = str(NeuronRef(h.layer, h.neuron))
        print(f"{ref:<12} {h.view:<5} {h.direction:<4} {h.rank + 1:>4}  "
              f"{json.dumps(h.token, ensure_ascii=False):<18} {h.prob:8.4f}")
    return 0


def cmd_models(args) -> int:
    rows = []
    for path, status in list_caches(args.cache_dir):
        if status is None:
            note(f"unreadable cache file {path} (delete it, or rebuild with `neuroscope decode MODEL --rebuild`)")
            continue
        if not status.get("ready"):
            continue                       # being created right now, or never finished: nothing in it yet
        rows.append({k: status[k] for k in ("model", "source", "layers", "neurons_per_layer", "views", "complete")}
                    | {"last_used": status.get("last_used") or 0})
    if args.json:
        _emit_json([{k: v for k, v in r.items() if k != "last_used"} for r in rows])
        return 0
    if not rows:
        print("no decoded models yet: try `neuroscope decode demo`")
        return 0
    print(f"{'model':<28} {'layers x neurons':<18} {'views':<14} {'complete':<9} last used")
    for r in rows:
        used = time.strftime("%Y-%m-%d %H:%M", time.localtime(r["last_used"])) if r["last_used"] else "-"
        shape = f"{r['layers']} x {r['neurons_per_layer']}"
        print(f"{r['model']:<28} {shape:<18} {','.join(r['views']) or '-':<14} "
              f"{'yes' if r['complete'] else 'no':<9} {used}")
    return 0


def prepare_tui(args):
    """Everything `neuroscope tui` checks before the app starts: (source, other or None)."""
    from .core.options import check_device_name, check_dtype

    check_dtype(args.dtype)
    check_device_name(args.device)
    spec = args.model or most_recent(args.cache_dir) or "demo"
    args.model = spec
    source = resolve(spec)               # a bad MODEL fails here, before the app starts
    path = cache_path(source.name, source.source, source.fingerprint, args.cache_dir)
    other = None
    if getattr(args, "compare", None):
        from .core.compare import precheck
        from .core.modelinfo import inspect_model

        other = resolve(args.compare)    # a bad OTHER fails here too
        precheck(inspect_model(source), inspect_model(other))   # different shapes or vocabularies
    elif not path.exists():
        from .core.modelinfo import inspect_model

        inspect_model(source)            # a damaged or unsupported model: one line, not an app that fails
    return source, other


def cmd_tui(args) -> int:
    source, other = prepare_tui(args)
    mark_used(source.name, source.source, source.fingerprint, args.cache_dir)
    from .tui.app import run_app

    return run_app(source, args, other) or 0


__all__ = ["CacheError", "CommandError", "dispatch", "note", "open_decoded"]
