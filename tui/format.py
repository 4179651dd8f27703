"""How tokens, probabilities and neurons are drawn. Everything returns rich Text (never markup: a token
such as ``[b]`` must show as typed)."""
from __future__ import annotations

import json

from rich.text import Text

EIGHTHS = " ▏▎▍▌▋▊▉█"


def show_token(token: str) -> str:
    """A token as one visible line: escapes like JSON, a leading space shown as ␣."""
    body = json.dumps(token, ensure_ascii=False)[1:-1].replace('\\"', '"')
    stripped = body.lstrip(" ")
    return "␣" * (len(body) - len(stripped)) + stripped


def bar(prob: float, width: int = 20) -> str:
    """A horizontal bar of ``width`` cells with eighth-cell resolution."""
    eighths = int(round(max(0.0, min(1.0, prob)) * width * 8))
    full, part = divmod(eighths, 8)
    return ("█" * full + (EIGHTHS[part] if part else "")).ljust(width)


def prob_text(prob: float) -> str:
    return f"{prob:.3f}" if prob >= 0.001 else f"{prob:.0e}"


def neuron_label(layer: int, neuron: int, token: str | None, prob: float | None) -> Text:
    text = Text(f"L{layer}:N{neuron}", style="bold")
    if token is None:
        text.append("  …", style="dim")
    else:
        text.append("  ")
        text.append(show_token(token)[:24], style="green")
        text.append(f" {prob_text(prob)}", style="dim")
    return text
