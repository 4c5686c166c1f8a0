"""``python launch.py``: the ``posebus`` command (launcher.cli) from a checkout."""
import sys

from launcher.cli import main

if __name__ == "__main__":
    sys.exit(main())
