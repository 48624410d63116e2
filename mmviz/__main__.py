"""``python -m mmviz``: see :mod:`mmviz.cli`."""

import sys

from mmviz.cli import main

if __name__ == "__main__":
    sys.exit(main())
