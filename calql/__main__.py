"""``python -m calql``: the same as the ``calql`` command (used by the workflow's rules)."""

import sys

from calql.cli import main

sys.exit(main())
