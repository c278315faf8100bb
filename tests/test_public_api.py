"""The public API: every exported name resolves, and importing cytogate stays light."""

import subprocess
import sys

import cytogate


def test_every_exported_name_resolves():
    for name in cytogate.__all__:
        assert getattr(cytogate, name) is not None, name
    assert set(cytogate._LAZY) <= set(cytogate.__all__)


def test_import_and_help_do_not_load_heavy_modules():
    code = (
        "import sys, cytogate, cytogate.cli\n"
        "heavy = [m for m in ('flowkit', 'bokeh', 'matplotlib', 'pandas', 'scipy') "
        "if m in sys.modules]\n"
        "print(','.join(heavy))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
