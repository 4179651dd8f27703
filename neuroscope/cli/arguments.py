"""The argparse types the command groups share: a top-k within its bounds, whole numbers with a floor, and a
list of views. Each refusal is the message argparse prints after "argument --OPTION:"."""

from __future__ import annotations

import argparse

from ..choices import TOP_K_RANGE, VIEWS
from ..core.options import check_top_k
from ..errors import NeuroscopeError


def top_k(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--top-k must be a whole number, not '{text}'") from None
    try:
        return check_top_k(value)  # the API's check; argparse's message names the flag
    except NeuroscopeError:
        low, high = TOP_K_RANGE
        raise argparse.ArgumentTypeError(f"--top-k must be between {low} and {high}") from None


def at_least(minimum: int):
    """An argparse type: a whole number of at least ``minimum``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, not '{text}'") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"expected a number of at least {minimum}, not {value}")
        return value

    return parse


positive, natural = at_least(1), at_least(0)


def views(text: str) -> list[str]:
    chosen = [v.strip() for v in text.split(",") if v.strip()]
    bad = [v for v in chosen if v not in VIEWS]
    if bad or not chosen:
        raise argparse.ArgumentTypeError(f"unknown view '{bad[0] if bad else text}': choose from {', '.join(VIEWS)}")
    return chosen


def devices(text: str) -> list[str]:
    """A comma-separated device list, e.g. cuda:0,cuda:1."""
    return [d.strip() for d in text.split(",") if d.strip()]
