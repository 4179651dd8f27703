"""The engine: model loading, decoding (torch + transformers). Never imports textual.

Modules that need torch import it themselves; ``loading.sources`` and ``refs`` stay torch-free so that
cache-only commands start fast.
"""
