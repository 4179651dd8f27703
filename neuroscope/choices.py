"""The words a user may choose from, declared once: every layer (cache, core, the API, the CLI's argparse
choices and the app's options) imports them from here. Torch-free and import-free, so the cache layer and
the CLI's parser can use it without loading anything."""

from __future__ import annotations

VIEWS = ("up", "gate", "down")  # a neuron's read rows (up, gate) and its write column (down)
FEATURE_VIEWS = ("dec", "enc")  # a dictionary feature's decoder row (what it writes), encoder column (what it reads)
DIRECTIONS = ("pos", "neg")  # the top tokens it promotes / suppresses
MATCH_MODES = ("word", "exact", "prefix", "contains")  # how a search text matches token text
SEARCH_MATCHES = (*MATCH_MODES, "label")  # search also matches concept labels
TOP_K_RANGE = (1, 255)  # tokens kept per neuron-direction (ranks are stored as uint8)
DEFAULT_TOP_K = 10
READS = ("gate", "up")  # a neuron's read vectors, as circuits name them (GPT-2/NeoX: up only)
EDGE_TOP = 32  # edges the circuit graph keeps per neuron, read vector and direction
HEAD_RANKS = 3  # singular directions of each attention head's OV circuit kept in the cache
HEAD_TOP = DEFAULT_TOP_K  # tokens kept per head direction, sign and side (writes, reads)
EXPORTS = ("neurons", "edges")  # what `export` writes: every neuron-direction's top-k, or the circuit graph
