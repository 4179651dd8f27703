"""The app module never imports torch (only the decode worker does, lazily)."""

import subprocess
import sys


def test_tui_imports_no_torch():
    code = "import sys, neuroscope.tui.app; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)
