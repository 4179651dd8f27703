from .parser import main, parse

__all__ = ["main", "parse"]
