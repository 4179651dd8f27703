"""The Textual app. Never imports torch at module level."""
