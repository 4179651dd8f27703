"""The one neuron notation: ``L29:N808`` (``29:808`` is accepted on input). Torch-free."""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..errors import BadNeuronRef

_REF = re.compile(r"^\s*[Ll]?(\d+)\s*:\s*[Nn]?(\d+)\s*$")


@dataclass(frozen=True, order=True)
class NeuronRef:
    layer: int
    neuron: int

    def __str__(self) -> str:
        return f"L{self.layer}:N{self.neuron}"

    @classmethod
    def parse(cls, text: str) -> "NeuronRef":
        m = _REF.fullmatch(text or "")
        if not m:
            raise BadNeuronRef(f"malformed neuron '{text}': write it as L29:N808 or 29:808")
        return cls(int(m.group(1)), int(m.group(2)))

    def check(self, layers: int, neurons: int) -> "NeuronRef":
        if self.layer < 0 or self.neuron < 0:
            raise BadNeuronRef(f"{self} is not a neuron: layers and neurons count from 0")
        if self.layer >= layers:
            raise BadNeuronRef(f"layer {self.layer} is out of range: the model has layers 0-{layers - 1}")
        if self.neuron >= neurons:
            raise BadNeuronRef(f"neuron {self.neuron} is out of range: each layer has neurons 0-{neurons - 1}")
        return self
