"""The one neuron notation: ``L29:N808`` (``29:808`` is accepted on input), the one head notation: ``L5:H3``
(``5:h3`` is accepted; the H is required, so a head is never taken for a neuron), and the one dictionary
feature notation: ``F123`` (``f123`` is accepted; a feature has no layer: its dictionary's hook says where it
lives). Torch-free."""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..errors import BadFeatureRef, BadHeadRef, BadNeuronRef

_REF = re.compile(r"^\s*[Ll]?(\d+)\s*:\s*[Nn]?(\d+)\s*$")
_HEAD = re.compile(r"^\s*[Ll]?(\d+)\s*:\s*[Hh](\d+)\s*$")
_MEANT_HEAD = re.compile(r"^[^:]*:\s*[Hh]")
_FEATURE = re.compile(r"^\s*[Ff](\d+)\s*$")
_MEANT_FEATURE = re.compile(r"^\s*[Ff][^:]*$")


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


def is_head_ref(text: str) -> bool:
    """Whether ``text`` is meant as an attention head (``L5:H3``, ``5:h3``: an H after the colon) rather than a
    neuron; HeadRef.parse then says what is wrong with a malformed one."""
    return bool(_MEANT_HEAD.match(text or ""))


@dataclass(frozen=True, order=True)
class HeadRef:
    layer: int
    head: int

    def __str__(self) -> str:
        return f"L{self.layer}:H{self.head}"

    @classmethod
    def parse(cls, text: str) -> "HeadRef":
        m = _HEAD.fullmatch(text or "")
        if not m:
            raise BadHeadRef(f"malformed head '{text}': write it as L5:H3 or 5:h3")
        return cls(int(m.group(1)), int(m.group(2)))

    def check(self, layers: int, heads: int) -> "HeadRef":
        if self.layer < 0 or self.head < 0:
            raise BadHeadRef(f"{self} is not a head: layers and heads count from 0")
        if self.layer >= layers:
            raise BadHeadRef(f"layer {self.layer} is out of range: the model has layers 0-{layers - 1}")
        if self.head >= heads:
            raise BadHeadRef(f"head {self.head} is out of range: each layer has heads 0-{heads - 1}")
        return self


def is_feature_ref(text: str) -> bool:
    """Whether ``text`` is meant as a dictionary feature (``F123``: an F and no colon) rather than a neuron."""
    return bool(_MEANT_FEATURE.match(text or ""))


@dataclass(frozen=True, order=True)
class FeatureRef:
    """Feature ``feature`` of a dictionary (an SAE's latent: its encoder column and decoder row)."""

    feature: int

    def __str__(self) -> str:
        return f"F{self.feature}"

    @classmethod
    def parse(cls, text: str) -> "FeatureRef":
        m = _FEATURE.fullmatch(text or "")
        if not m:
            raise BadFeatureRef(f"malformed feature '{text}': write it as F123 (a dictionary feature, with --sae)")
        return cls(int(m.group(1)))

    def check(self, features: int) -> "FeatureRef":
        if self.feature >= features:
            raise BadFeatureRef(f"feature {self.feature} is out of range: the dictionary has features 0-{features - 1}")
        return self
