"""Base vs fine-tune, for the API: neuroscope.compare (and Model.compare) check the request, say when both
are one model, check that their shapes and vocabularies agree before anything is decoded, then compare the
two caches (core.compare)."""

from __future__ import annotations

from .errors import UsageError
from .results import check_view_direction


def compare_models(base, other, view: str = "up", direction: str = "pos", top: int = 50):
    """neuroscope.compare on two opened Models (neuroscope.api): a core.compare.Comparison."""
    from .core.compare import compare_stores, precheck

    check_view_direction(view, direction)
    if not isinstance(top, int) or top < 0:
        raise UsageError("top must be a whole number")
    for model in (base, other):  # a view either lacks: before the other is decoded or said
        model.info.check_views([view])
    same = base.source.source == other.source.source and base.source.fingerprint == other.source.fingerprint
    if same:
        base.note(
            f"BASE and OTHER are the same model ({base.name}): every neuron agrees with itself, "
            f"agreement is 1.0 by construction"
        )
    else:
        precheck(base.info, other.info)  # different shapes or vocabularies: before anything is decoded
    with base.store(view) as a, other.store(view) as b:
        return compare_stores(a, b, view, direction, top=top, base_source=base.source, other_source=other.source)
