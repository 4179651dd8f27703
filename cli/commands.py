"""The CLI's commands. Cache-only paths (search/show on a cached model, models) never import torch."""
from __future__ import annotations

import json
import sqlite3
import sys
import time

from .cache.catalog import cache_path, list_caches, mark_used, most_recent
from .cache.store import CacheError, Store
from .core.refs import BadNeuronRef, NeuronRef
from .core.sources import ModelNotFound, Source, resolve


class CommandError(Exception):
    """A problem with the user's input: printed as one line, exit code 2."""


def note(message: str) -> None:
    sys.stderr.write(f"neuroscope: {message}\n")
    sys.stderr.flush()


def dispatch(args) -> int:
    handler = {"decode": cmd_decode, "show": cmd_show, "search": cmd_search, "models": cmd_models,
               "tui": cmd_tui, "clamp": _lazy("clamp_cmd", "cmd_clamp"),
               "compare": _lazy("compare_cmd", "cmd_compare")}[args.command]
    try:
        return handler(args) or 0
    except KeyboardInterrupt:
        note("interrupted; every finished layer is saved, run the same command again to resume")
        return 130
    except BrokenPipeError:
        return 0
    except Exception as exc:  # noqa: BLE001 - every expected failure becomes one line
        message = _user_message(exc)
        if message is None:
            raise
        sys.stderr.write(f"neuroscope {args.command}: error: {message}\n")
        return 2


def _lazy(module: str, name: str):
    """A command implemented in its own module, imported only when it runs."""
    def run(args):
        import importlib

        return getattr(importlib.import_module(f"{__package__}.{module}"), name)(args)
    return run


def _user_message(exc: Exception) -> str | None:
    if isinstance(exc, (CommandError, ModelNotFound, BadNeuronRef, CacheError)):
        return str(exc)
    if isinstance(exc, sqlite3.DatabaseError):
        return f"the cache file is unreadable ({exc}); run `neuroscope decode MODEL --rebuild`"
    name = type(exc).__name__
    if name in ("UnsupportedModel", "ModelLoadError"):
        return str(exc)
    if isinstance(exc, ValueError) and exc.args and isinstance(exc.args[0], str) and len(exc.args[0]) < 300:
        return exc.args[0]
    if isinstance(exc, (OSError, MemoryError)):
        return f"{name}: {exc}"
    return None


def _emit_json(value) -> None:
    sys.stdout.write(json.dumps(value, ensure_ascii=False) + "\n")


def decode(source: Source, args, views=None, top_k: int = 10):
    """Decode with a progress bar on stderr (imports torch: only when the cache lacks something)."""
    from .core.pipeline import ensure_decoded
    from .progress import ProgressBar

    note(f"decoding {source.name} ({source.source}); Ctrl-C stops, finished layers are kept")
    bar = ProgressBar("decode", unit="neuron-views")
    devices = getattr(args, "devices", None)
    from .core.distributed import under_torchrun

    try:
        if devices or under_torchrun():
            from .core.distributed import decode_distributed

            return decode_distributed(source, devices, views=views, top_k=top_k, dtype=args.dtype,
                                      cache_dir=args.cache_dir, rebuild=getattr(args, "rebuild", False),
                                      trust_remote_code=args.trust_remote_code, progress=bar, note=note)
        return ensure_decoded(source, views=views, top_k=top_k, device=args.device, dtype=args.dtype,
                              cache_dir=args.cache_dir, rebuild=getattr(args, "rebuild", False),
                              trust_remote_code=args.trust_remote_code, progress=bar, note=note)
    finally:
        bar.close()


def open_decoded(args, view: str | None = None) -> tuple[Source, Store]:
    """The model's cache, decoding first when it is missing or lacks ``view`` (or any view)."""
    source = resolve(args.model)
    path = cache_path(source.name, source.source, source.fingerprint, args.cache_dir)
    for attempt in range(2):
        if path.exists():
            store = Store(path, readonly=True)
            if view is not None and view not in store.views:
                store.close()
                raise CommandError(f"{store.meta.get('arch')} has no '{view}' view; it has {', '.join(store.views)}")
            if attempt or store.has_decoded([view] if view else None):
                return source, store
            store.close()
        decode(source, args, views=None)
    raise CommandError(f"decoding {source.name} did not produce a cache at {path}")


def cmd_decode(args) -> int:
    source = resolve(args.model)
    result = decode(source, args, views=args.views, top_k=args.top_k)
    if result is None:  # a torchrun rank other than 0: rank 0 reports
        return 0
    summary = {"model": source.name, "views": result.views, "neurons": result.neurons,
               "seconds": round(result.seconds, 3)}
    if args.json:
        _emit_json(summary)
    else:
        what = "decoded" if result.decoded_units else "already cached"
        print(f"{source.name}: {result.neurons:,} neurons x {'/'.join(result.views)} {what} "
              f"in {result.seconds:.1f} s{' on ' + result.device if result.device else ''} -> {result.path}")
    return 0


def cmd_show(args) -> int:
    ref = NeuronRef.parse(args.neuron)
    source, store = open_decoded(args, args.view)
    with store:
        ref.check(store.layers, store.neurons)
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


def cmd_search(args) -> int:
    if not args.text.strip():
        raise CommandError("TEXT is empty: give a token to search for, e.g. dog")
    source, store = open_decoded(args, args.view)
    with store:
        if args.max_rank > store.top_k:
            raise CommandError(f"--max-rank {args.max_rank} exceeds the cached top-{store.top_k}; "
                               f"decode again with --top-k {args.max_rank} --rebuild")
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
        rows.append({k: status[k] for k in ("model", "source", "layers", "neurons_per_layer", "views", "complete")}
                    | {"last_used": status.get("last_used", 0)})
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


def cmd_tui(args) -> int:
    spec = args.model
    if spec is None:
        spec = most_recent(args.cache_dir) or "demo"
    args.model = spec
    source = resolve(spec)  # a bad MODEL fails here, before the app starts
    mark_used(source.name, source.source, source.fingerprint, args.cache_dir)
    from .tui.app import run_app

    return run_app(source, args) or 0
