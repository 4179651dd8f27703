"""Clamping experiments, for the API: what the user asked for (a core.experiment.ClampRequest) becomes a
checked Experiment, its prompt is tokenized and checked, and it runs (baseline vs clamped). neuroscope.api's
Model calls these. Everything the headers and the tokenizer alone can tell is checked before the model loads."""

from __future__ import annotations

import json
import threading
from dataclasses import replace
from typing import Callable

from .concepts import DEFAULT_MIN_MASS, DEFAULT_STRENGTH
from .core.clamp import MODES, ClampSet, load_preset
from .core.experiment import ClampRequest, Experiment, GenSettings, settings_from
from .errors import UsageError
from .results import ClampReport, as_clamps

# a setting neither given nor saved in the preset
DEFAULTS = {
    "chat": GenSettings.chat,
    "max_new_tokens": GenSettings.max_new_tokens,
    "seed": GenSettings.seed,
    "strength": DEFAULT_STRENGTH,
    "min_mass": DEFAULT_MIN_MASS,
}


def experiment(model, request: ClampRequest) -> Experiment:
    """A checked Experiment (everything the headers can tell is checked; nothing is loaded). The request's
    concept adds a clamp for every neuron labelled with it (concepts.concept_clamps)."""
    clamp_set, saved = load_preset(request.preset) if request.preset else (ClampSet(), {})
    s = settings_from(request.settings(), saved, DEFAULTS)
    mode = request.mode
    if mode is not None and mode not in MODES:
        raise UsageError(f"unknown mode '{mode}': choose from {', '.join(MODES)}")
    if mode is not None:
        clamp_set.clamps = [replace(c, mode=mode) for c in clamp_set.clamps]
    clamp_set.clamps.extend(as_clamps(request.clamps, mode or "set"))
    if request.positions is not None:
        clamp_set.positions = request.positions
    given = ClampSet(list(clamp_set.clamps), clamp_set.positions)
    settings = GenSettings(s["max_new_tokens"], s["temperature"], s["top_p"], s["seed"], s["chat"])
    exp = Experiment(s["prompt"], clamp_set, settings, s["target"], s["samples"], given, s)
    exp.check().check_model(model.info)  # all of it before a concept's look-up (which may decode)
    if s["concept"] is not None:
        from .concepts import concept_clamps

        strength, min_mass = s["strength"], s["min_mass"]
        if not (isinstance(strength, (int, float)) and abs(strength) <= 1000 and strength == strength):
            raise UsageError("--strength must be a number from -1,000 to 1,000")
        if not (isinstance(min_mass, (int, float)) and 0 <= min_mass <= 1):
            raise UsageError("--min-mass must be a number from 0 to 1")
        clamp_set.clamps.extend(concept_clamps(model, s["concept"], float(strength), float(min_mass)))
    else:
        s.pop("strength"), s.pop("min_mass")
    if not clamp_set:
        raise UsageError("no clamps: give --set NEURON=VALUE (e.g. --set L29:N808=8) or --preset NAME")
    return exp


def prepare(model, exp: Experiment):
    """The experiment's prompt, tokenized with the tokenizer alone and checked against the context (the
    model is not loaded yet)."""
    from .core.generate import Tokenized, build_prompt
    from .core.measure import target_token

    tokens = Tokenized(model.source, model.tokenizer())
    built = build_prompt(tokens, exp.prompt, exp.settings.chat)
    model.info.check_new_tokens(built.length + exp.settings.max_new_tokens)
    if exp.target is not None:
        tgt = target_token(tokens, built, exp.target)
        if tgt.tokens > 1:
            model.note(
                f"target '{exp.target}' is {tgt.tokens} tokens; measuring p of its first token "
                f"{json.dumps(tgt.token, ensure_ascii=False)}"
            )
    return built


def run(
    model,
    exp: Experiment,
    prepared,
    on_text: Callable[[str, str], None] | None = None,
    cancel: threading.Event | None = None,
) -> ClampReport:
    """Run a checked experiment on its prepared prompt (loads the model on first use)."""
    from .core.measure import run_experiment

    lm = model.loaded()
    model.note(f"clamping {exp.clamps.describe()}")
    progress, close = model._progress("clamp") if exp.samples else (None, lambda: None)
    try:  # with samples: a bar (tokens sampled, ETA) while they run
        result = run_experiment(lm, exp, on_text=on_text, cancel=cancel, prepared=prepared, progress=progress)
    finally:
        close()
    return ClampReport(model.name, exp, result)
