"""What the API returns: records with ``as_dict()``, lists that become DataFrames, and the small parsers of
what a notebook user types (neurons as "L29:N808", (29, 808) or NeuronRef; clamps as dicts or strings)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, is_dataclass
from typing import TYPE_CHECKING

from .choices import DIRECTIONS, VIEWS
from .core.clamp import Clamp, parse_value
from .core.experiment import Experiment
from .core.refs import NeuronRef
from .errors import UsageError

if TYPE_CHECKING:  # core.measure imports torch: the API's import stays light without it
    from .core.measure import Activation, Result, Side


class Records(list):
    """A list of result records (dataclasses) that can become a pandas DataFrame."""

    def to_pandas(self):
        try:
            import pandas as pd
        except ImportError:
            raise UsageError("to_pandas() needs pandas: pip install pandas") from None
        return pd.DataFrame([asdict(r) if is_dataclass(r) else dict(r) for r in self])

    def as_dicts(self) -> list[dict]:
        return [r.as_dict() if hasattr(r, "as_dict") else asdict(r) for r in self]


def check_view_direction(view: str | None, direction: str | None) -> None:
    if view is not None and view not in VIEWS:
        raise UsageError(f"unknown view {view!r}: choose up, gate or down")
    if direction is not None and direction not in DIRECTIONS:
        raise UsageError(f"unknown direction {direction!r}: choose pos or neg")


def as_ref(value) -> NeuronRef:
    """A neuron given as "L29:N808", "29:808", (29, 808), a NeuronRef, or anything with a NeuronRef as its
    ``ref`` (a Neuron, a circuit's Edge)."""
    if isinstance(value, NeuronRef):
        return value
    if isinstance(getattr(value, "ref", None), NeuronRef):
        return value.ref
    if isinstance(value, tuple) and len(value) == 2 and all(isinstance(v, int) for v in value):
        return NeuronRef(*value)
    if isinstance(value, str):
        return NeuronRef.parse(value)
    raise UsageError(f"a neuron is written 'L29:N808' (or 29:808, or (29, 808)), not {value!r}")


def tqdm_progress(label: str):
    """A progress callback drawing a tqdm bar (in a notebook, tqdm.auto picks the widget), and its closer."""
    from tqdm.auto import tqdm

    bar: list[tqdm | None] = [None]

    def update(done: int, total: int) -> None:
        current = bar[0]
        if current is None:
            current = bar[0] = tqdm(total=total, desc=label, unit="neuron-view", unit_scale=True, leave=True)
        current.total = total
        current.update(done - current.n)

    def close() -> None:
        if bar[0] is not None:
            bar[0].close()

    return update, close


def as_clamps(clamps, mode: str) -> list[Clamp]:
    if clamps is None:
        return []
    if isinstance(clamps, dict):
        return [Clamp(as_ref(k), parse_value(v), mode) for k, v in clamps.items()]
    if isinstance(clamps, (str, Clamp)):
        clamps = [clamps]
    return [c if isinstance(c, Clamp) else Clamp.parse(c, mode) for c in clamps]


@dataclass
class ClampReport:
    """Baseline vs clamped: texts, p(target), target rates, the clamped neurons' natural activation."""

    model: str
    experiment: Experiment
    result: Result  # core.measure.Result (its .target: the measured token, or None)

    @property
    def baseline(self) -> Side:
        return self.result.baseline

    @property
    def clamped(self) -> Side:
        return self.result.clamped

    @property
    def activation(self) -> list[Activation]:
        return self.result.activation

    def as_dict(self) -> dict:
        exp = self.experiment
        return {
            "model": self.model,
            "clamps": [c.as_dict() for c in exp.clamps.clamps],
            "prompt": exp.prompt,
            "target": exp.target,
            "baseline": self.baseline.as_dict(),
            "clamped": self.clamped.as_dict(),
            "activation": [a.as_dict() for a in self.activation],
            "settings": exp.settings_dict,
        }


@dataclass(frozen=True)
class CachedModel:
    model: str
    source: str
    layers: int
    neurons_per_layer: int
    views: list
    complete: bool
    last_used: float
    hub_id: str | None = None  # when known (a hub model, the demo); None for a local folder
    revision: str | None = None  # the hub snapshot's commit, when known

    def as_dict(self) -> dict:
        """model, hub_id, revision first (as in every command's JSON), then the rest as declared."""
        out = {k: v for k, v in asdict(self).items() if k != "last_used"}
        return {"model": out.pop("model"), "hub_id": out.pop("hub_id"), "revision": out.pop("revision"), **out}
