"""Draws a run's curves: ``python scripts/plot_run.py runs/<name> [--features [--tsne]]``.

The code lives in ``sslx/plot.py`` (the ``sslx-plot`` command of ``pip install
"sslx[train]"``); this script runs it from a checkout. ``--help`` lists what it writes.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from sslx.plot import cli  # noqa: E402

if __name__ == "__main__":
  cli()
