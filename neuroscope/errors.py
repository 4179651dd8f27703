"""Typed user errors: what a person sees, and nothing else. Imports nothing (torch-free, textual-free).

Every error a user can fix derives from :class:`NeuroscopeError`: its ``str()`` is the one line the CLI
prints before exiting with code 2, and its ``title`` heads the app's error modal. Code maps errors by
these types, never by class names. Anything that is not a NeuroscopeError is a bug and keeps its
traceback.
"""

from __future__ import annotations


class NeuroscopeError(Exception):
    """A problem with the user's input, files or environment; the message is one line for them."""

    title = "error"


class UsageError(NeuroscopeError, ValueError):
    """A bad argument or option value (a ValueError too, as Python code expects of a bad argument)."""

    title = "bad input"


class BadNeuronRef(UsageError):
    """A neuron reference that is malformed or out of the model's range."""


class BadHeadRef(UsageError):
    """An attention head reference (``L5:H3``) that is malformed or out of the model's range."""


class BadFeatureRef(UsageError):
    """A dictionary feature reference (``F123``) that is malformed or out of the dictionary's range."""


class BadClamp(UsageError):
    """Malformed clamp input: a --set, a value, a preset."""


class GenerationError(UsageError):
    """Bad generation settings or prompt: empty prompt, no chat template, too many tokens."""


class ModelError(NeuroscopeError):
    """The model cannot be used."""

    title = "cannot use this model"


class ModelNotFound(ModelError):
    """The MODEL argument names nothing usable."""


class UnsupportedModel(ModelError):
    """The architecture has no registry entry; the message names what is supported."""


class DamagedModel(ModelError):
    """A file of the model is truncated, garbled or inconsistent; the message names the file."""


class ModelLoadError(ModelError):
    """Loading failed for another stated reason (remote code needed, a library refused the files)."""


class DeviceError(UsageError):
    """A --device or --devices value that names no usable device."""


class Incompatible(UsageError):
    """Two models cannot be compared neuron by neuron; the message says what differs."""

    title = "cannot compare these models"


class DictionaryError(NeuroscopeError):
    """A --sae dictionary (a SAELens folder) that cannot be used; the message names the file or the mismatch."""

    title = "cannot use this dictionary"


class DamagedDictionary(DictionaryError):
    """cfg.json or sae_weights.safetensors is missing, garbled, truncated, or not the SAELens format."""


class DictionaryMismatch(DictionaryError):
    """A sound dictionary that does not fit the model: its width, layer or hook site is not the model's."""


class CacheError(NeuroscopeError):
    """A cache file that cannot be used; the message says what to do."""

    title = "cache"


class CorruptCache(CacheError):
    """SQLite positively says the file is not a database or is malformed (the only case that may lead
    to its removal)."""


class CacheBusy(CacheError):
    """Another process held the cache locked for longer than the busy timeout."""


class Cancelled(Exception):
    """The caller asked long work to stop (not an error: finished units are already stored)."""


def first_line(exc: BaseException, limit: int = 200) -> str:
    """The first non-empty line of an exception's text (or its type's name), at most ``limit`` long."""
    text = next((line.strip() for line in str(exc).splitlines() if line.strip()), "") or type(exc).__name__
    return text if len(text) <= limit else text[: limit - 1] + "…"


def one_line(text: str) -> str:
    """``text`` as a single printable line: control characters (newlines, carriage returns, tabs, line
    separators) that a user typed or a file held are shown as escapes."""
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text)
