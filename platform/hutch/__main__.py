"""``python -m hutch``."""

from .cli.main import main

main()
