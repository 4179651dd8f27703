"""What every command prints through: notes on stderr, JSON on stdout, the CLI's progress bar, and the API
model made from what the user typed."""

from __future__ import annotations

import sys

from .. import api
from ..export import json_text
from ..progress import ProgressBar


def note(message: str) -> None:
    sys.stderr.write(f"neuroscope: {message}\n")
    sys.stderr.flush()


SCIENTIFIC_BELOW = 1e-3  # a probability or ratio this small prints as 3.06e-07, never as 0.0000


def fmt_prob(p: float | None, digits: int = 4) -> str:
    """A probability (or any small non-negative number, a difference) for people: fixed-point with ``digits``
    decimals, in scientific notation below 1e-3 so that a tiny value never reads as zero; "-" for None."""
    if p is None:
        return "-"
    if p != 0 and abs(p) < SCIENTIFIC_BELOW:
        return f"{p:.2e}"
    return f"{p:.{digits}f}"


def fmt_ratio(r: float | None) -> str:
    """A ratio of probabilities, e.g. "39.6x", "0.0512x", "2.50e-05x", "1.3e+09x"; "-" for None."""
    if r is None:
        return "-"
    if r != 0 and (abs(r) < SCIENTIFIC_BELOW or abs(r) >= 1e6):
        return f"{r:.2e}x"
    return f"{r:,.0f}x" if abs(r) >= 100 else f"{r:.3g}x"


def progress_bar(label: str):
    """The CLI's progress bar on stderr (neuroscope.progress), as the API's progress factory: "decode …"
    counts neuron-views, "examples …" corpus tokens."""
    what = label.split()[0]
    unit = {
        "examples": "tokens",
        "export": "neuron-directions",
        "clamp": "tokens",
        "circuit": "layers",
        "heads": "layers",
    }.get(what, "neuron-views")
    bar = ProgressBar(what, unit=unit)
    return bar, bar.close


def emit_json(value, *models) -> None:
    """One JSON line on stdout; an object gains its model's ``hub_id`` and ``revision`` after its ``model``
    key (compare, with two models: ``base_hub_id`` … after ``base``, ``other_hub_id`` … after ``other``)."""
    if models and isinstance(value, dict):
        value = with_provenance(value, models)
    sys.stdout.write(json_text(value) + "\n")  # one line, whatever the token texts hold


def with_provenance(value: dict, models) -> dict:
    sides = (
        {"model": ("", models[0])}
        if len(models) == 1
        else {"base": ("base_", models[0]), "other": ("other_", models[1])}
    )
    out = {}
    for key, item in value.items():
        out[key] = item
        if key in sides:
            prefix, model = sides[key]
            out.update({prefix + k: v for k, v in model.provenance.items()})
    return out


def open_model(args, spec: str | None = None) -> api.Model:
    """The API's model for what the user typed, reporting on stderr."""
    return api.open(
        args.model if spec is None else spec,
        cache_dir=args.cache_dir,
        device=getattr(args, "device", "auto"),
        dtype=getattr(args, "dtype", "auto"),
        trust_remote_code=getattr(args, "trust_remote_code", False),
        progress=progress_bar,
        note=note,
    )
