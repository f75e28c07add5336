"""``python -m idserver.phone``: the same as ``idserver-phone``."""

from .cli import main

main(prog_name="idserver-phone")
