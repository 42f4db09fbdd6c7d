"""Sub-commands of the ``calql`` CLI (see calql/cli.py)."""
