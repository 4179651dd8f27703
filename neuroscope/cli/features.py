"""`show MODEL F7 --sae PATH`: a dictionary feature's top tokens through the decode's lens, printed from what
neuroscope.features returns. The feature, the dictionary and its fit with the model are checked before
anything loads."""

from __future__ import annotations

from ..cache.labels import LABEL_FLOOR
from ..cache.words import quoted
from ..choices import FEATURE_VIEWS
from ..core.dictionaries import open_dictionary
from ..core.refs import FeatureRef
from ..features import feature
from .errors import CommandError
from .output import emit_json, fmt_prob, open_model


def show_feature(args) -> int:
    ref = FeatureRef.parse(args.neuron)
    if args.examples:
        raise CommandError("--examples is for neurons: a dictionary feature has no activation examples yet")
    if args.view is not None and args.view not in FEATURE_VIEWS:
        raise CommandError(f"--view {args.view} is a neuron's view: a feature's are {', '.join(FEATURE_VIEWS)}")
    view = args.view or FEATURE_VIEWS[0]
    dictionary = open_dictionary(args.sae)  # a damaged or foreign folder: one line, no model touched
    model = open_model(args)
    got = feature(model, dictionary, ref, view, args.direction)
    if args.json:
        emit_json(got.as_dict(), model)
        return 0
    label = got.label
    c = dictionary.config
    print(
        f"{model.name} {ref} {view} {args.direction}  ({c.architecture} dictionary at {c.hook.name}, "
        f"{c.d_sae:,} features)"
        + (
            f"  label: {label} (entropy {label.entropy:.2f})"
            if label
            else f"  label: none (no word holds {LABEL_FLOOR:.0%} of its top-{len(got.top)} mass)"
        )
    )
    for t in got.top:
        bar = "█" * max(1, round(t.prob * 30)) if t.prob >= 0.005 else "·"
        print(f"  {t.rank + 1:>3}  {quoted(t.token):<20} {fmt_prob(t.prob):>8}  {bar}")
    return 0
