"""Bürger-ID load and sizing benchmark: ``python -m bench --help``."""
