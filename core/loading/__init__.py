"""Resolving, reading and loading models: MODEL (demo, a folder, a .gguf file, a hub id) -> source
(sources), shape (modelinfo), weights (weights, streaming, gguf_fast), the loaded model (models), the
modules a decode reads (adapter), and where it came from (provenance). ``sources`` stays torch-free."""
