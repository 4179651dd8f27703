"""The SQLite store of decoded neurons. Imports neither torch nor textual."""
