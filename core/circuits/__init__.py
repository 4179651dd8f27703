"""Circuits from the weights alone: the virtual weights between MLP neurons of different layers (weights.py) and
the whole model's top-k graph of them, computed in resumable units into the cache (graph.py, build.py)."""
