"""Placeholder: the journal plugin's hooks (being written)."""
