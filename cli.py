"""Run cytogate from a checkout without installing it: ``python cli.py batch sample_fcs/run42``.

Forwards to the package's command (:func:`cytogate.cli.main`) with ``src/`` put on the path,
so the checkout and the installed ``cytogate`` command behave the same.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent / "src"))

from cytogate.cli import main

if __name__ == "__main__":
    main()
