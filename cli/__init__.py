"""neuroscope: decode what every MLP neuron of a language model means, through its own LM head."""
__version__ = "0.1.0"
