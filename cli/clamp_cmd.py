"""`neuroscope clamp`: clamp neurons, generate baseline vs clamped, measure p(target) and the target rate.

Everything the user typed is checked before the model loads: clamps, values, settings and presets on
their own, neuron ranges, the context length and the chat template against the model's headers, the
prompt's and target's tokens with the tokenizer alone. A typo costs milliseconds, not a model load."""
from __future__ import annotations

import json
import sys

from .commands import CommandError, note
from .core.clamp import Clamp, ClampSet, check_preset_name, load_preset, save_preset
from .core.sources import resolve


def _clamps(args) -> tuple[ClampSet, dict]:
    """The run's ClampSet: the preset's clamps (if any), then each --set; plus the preset's extras."""
    clamps, extra = ClampSet(), {}
    if args.preset:
        clamps, extra = load_preset(args.preset)
    clamps.clamps.extend(Clamp.parse(spec, args.mode) for spec in args.sets)
    if args.positions != "all" or not args.preset:
        clamps.positions = args.positions
    if not clamps:
        raise CommandError("no clamps: give --set NEURON=VALUE (e.g. --set L29:N808=8) or --preset NAME")
    return clamps, extra


def _load(source, args, tokenizer):
    from .core.decode import pick_device
    from .core.models import load

    note(f"loading {source.name} ({source.source})")
    dtype = {"auto": "auto", "float32": "float32", "bfloat16": "bfloat16"}[args.dtype]
    if dtype != "auto":
        import torch

        dtype = getattr(torch, dtype)
    lm = load(source, trust_remote_code=args.trust_remote_code, dtype=dtype, tokenizer=tokenizer)
    device = pick_device(args.device)
    if device.type != "cpu":
        lm.model.to(device)
    return lm


def _stream_printer():
    current = [None]

    def on_text(side: str, text: str) -> None:
        if current[0] != side:
            sys.stdout.write(("\n" if current[0] else "") + f"--- {side} ---\n")
            current[0] = side
        sys.stdout.write(text)
        sys.stdout.flush()

    def finish() -> None:
        if current[0]:
            sys.stdout.write("\n\n")

    return on_text, finish


def _fmt_prob(p) -> str:
    return "-" if p is None else f"{p:.4f}"


def _fmt_rate(side, n) -> str:
    return "-" if side.target_rate is None else f"{round(side.target_rate * n)}/{n} = {side.target_rate:.2f}"


def cmd_clamp(args) -> int:
    from .core.experiment import Experiment, GenSettings
    from .core.modelinfo import inspect_model
    from .core.options import check_device_name, check_dtype

    check_dtype(args.dtype)
    check_device_name(args.device)
    clamps, extra = _clamps(args)
    prompt = args.prompt if args.prompt is not None else extra.get("prompt")
    target = args.target if args.target is not None else extra.get("target")
    chat = args.chat or bool(extra.get("chat", False))
    if args.save_preset:
        check_preset_name(args.save_preset)
    settings = GenSettings(args.max_new_tokens, args.temperature, args.top_p, args.seed, chat)
    exp = Experiment(prompt, clamps, settings, target, args.samples).check()
    source = resolve(args.model)
    info = inspect_model(source)
    exp.check_model(info)                           # headers only: ranges, context, chat template
    if args.device != "cpu":
        from .core.decode import pick_device

        pick_device(args.device)                    # a missing GPU: before the model loads
    from .core.generate import Tokenized, build_prompt
    from .core.measure import run_experiment, target_token
    from .core.models import load_tokenizer

    tokenizer = load_tokenizer(source, args.trust_remote_code)
    built = build_prompt(Tokenized(source, tokenizer), prompt, chat)
    info.check_new_tokens(built.length + settings.max_new_tokens)
    if target is not None:
        tgt = target_token(Tokenized(source, tokenizer), built, target)
        if tgt.tokens > 1:
            note(f"target '{target}' is {tgt.tokens} tokens; measuring p of its first token "
                 f"{json.dumps(tgt.token, ensure_ascii=False)}")
    if args.save_preset:
        path = save_preset(args.save_preset, clamps, {"model": source.name, "prompt": prompt, "target": target,
                                                      "chat": chat})
        note(f"saved preset '{args.save_preset}' -> {path}")
    lm = _load(source, args, tokenizer)
    note(f"clamping {clamps.describe()}")
    on_text, finish = (None, lambda: None) if args.json else _stream_printer()
    result = run_experiment(lm, exp, on_text=on_text, prepared=built)
    finish()
    if args.json:
        sys.stdout.write(json.dumps({
            "model": source.name,
            "clamps": [c.as_dict() for c in clamps.clamps],
            "prompt": prompt,
            "target": target,
            "baseline": result.baseline.as_dict(),
            "clamped": result.clamped.as_dict(),
            "activation": [a.as_dict() for a in result.activation],
        }, ensure_ascii=False) + "\n")
        return 0
    print(f"{source.name}: {clamps.describe()}")
    for a in result.activation:
        print(f"  natural activation of {a.ref} on the prompt: min {a.min:.3f}  max {a.max:.3f}  last {a.last:.3f}")
    if result.target is not None:
        t = result.target
        print(f"  target {json.dumps(target, ensure_ascii=False)} -> token {json.dumps(t.token, ensure_ascii=False)}")
        n = args.samples or 0
        print(f"  {'':<9} {'p(target)':>10}  {'replies with target' if n else ''}".rstrip())
        for name, side in (("baseline", result.baseline), ("clamped", result.clamped)):
            print(f"  {name:<9} {_fmt_prob(side.target_prob):>10}  {_fmt_rate(side, n) if n else ''}".rstrip())
        if result.baseline.target_prob and result.clamped.target_prob is not None:
            print(f"  ratio     {result.clamped.target_prob / result.baseline.target_prob:10.1f}x")
    return 0
