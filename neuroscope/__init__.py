"""neuroscope: decode what every MLP neuron of a language model means, through its own LM head.

The notebook API (the CLI and the app use it too)::

    import neuroscope
    demo = neuroscope.open("demo")                  # `demo`, a model folder, a .gguf file or a hub id
    demo.decode()                                   # every neuron, all views, both directions, cached
    demo.neuron("L29:N808").top(view="gate")        # its top tokens
    demo.search("dog", max_rank=3).to_pandas()      # neurons whose top tokens are a form of "dog"
    demo.clamp({"L29:N808": 20}, prompt="What is your favourite animal?", chat=True, target="dog")
    neuroscope.compare("base-model", "tuned-model") # same top-1 fraction, most-changed neurons

See README, "In a notebook".
"""

from .api import CachedModel, ClampReport, Model, Neuron, Records, compare, models, open
from .cache.schema import TopToken
from .cache.store import Hit
from .core.refs import NeuronRef
from .errors import (
    BadNeuronRef,
    CacheError,
    DamagedModel,
    ModelNotFound,
    NeuroscopeError,
    UnsupportedModel,
    UsageError,
)

__version__ = "0.1.0"
__all__ = [
    "BadNeuronRef",
    "CacheError",
    "CachedModel",
    "ClampReport",
    "DamagedModel",
    "Hit",
    "Model",
    "ModelNotFound",
    "Neuron",
    "NeuronRef",
    "NeuroscopeError",
    "Records",
    "TopToken",
    "UnsupportedModel",
    "UsageError",
    "compare",
    "models",
    "open",
]
