"""``python -m hutch``."""

from .cli import main

main()
