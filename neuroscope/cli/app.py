"""`neuroscope tui` (and `neuroscope` with no command): every check of the arguments, then the browser app."""

from __future__ import annotations

from ..cache.catalog import mark_used, most_recent
from ..concepts import ensure_labels
from ..core.compare import precheck
from ..errors import CacheError
from .errors import CommandError
from .output import note, open_model


def register(sub, common, engine) -> None:
    p = sub.add_parser("tui", parents=[common, engine], help="open the browser app")
    p.add_argument(
        "model", metavar="MODEL", nargs="?", default=None, help="default: the most recently used model, else demo"
    )
    p.add_argument(
        "--compare", default=None, metavar="OTHER", help="show each neuron decoded in OTHER too, side by side"
    )
    p.set_defaults(run=cmd_tui)


def prepare_tui(args):
    """Everything `neuroscope tui` checks before the app starts: (model, other model or None)."""
    from ..tui.app import NeuroscopeApp  # textual: only when the app is to run

    config = getattr(args, "config", None)
    unknown = sorted(set(config.keymap) - set(NeuroscopeApp.bindings())) if config else []
    if unknown:
        raise CommandError(
            f"{config.path}: [keymap] names no binding {unknown[0]!r}; the ids are in "
            f"`neuroscope tui`'s help (?) and README"
        )
    args.model = args.model or most_recent(args.cache_dir) or "demo"
    model = open_model(args)  # a bad MODEL, --device or --dtype fails here, before the app starts
    other = None
    if getattr(args, "compare", None):
        other = open_model(args, args.compare)
        precheck(model.info, other.info)  # different shapes or vocabularies: one line, not an app that fails
    elif not model.path.exists():
        _ = model.info  # a damaged or unsupported model: one line, not an app that fails
    if model.path.exists():
        try:
            ensure_labels(model.path, note)  # a cache made before labels: labelled once, announced here
        except CacheError:
            pass  # a damaged or busy cache: the app says so and offers a rebuild
    return model, other


def cmd_tui(args) -> int:
    model, other = prepare_tui(args)
    mark_used(model.source.name, model.source.source, model.source.fingerprint, args.cache_dir)
    from ..tui.app import run_app  # textual

    return run_app(model.source, args, other.source if other else None) or 0
