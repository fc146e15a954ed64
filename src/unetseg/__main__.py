"""``python -m unetseg``: the same as the ``unetseg`` command."""

import sys

from unetseg.cli import main

if __name__ == "__main__":
    sys.exit(main())
