"""recfast.distributed imports without ray; a call that needs it says which extra to install."""

from __future__ import annotations

import subprocess
import sys

SCRIPT = """
import sys
sys.modules["ray"] = None  # as if ray were not installed
import numpy as np
import recfast.distributed as d
for call in (lambda: d.require_ray(), lambda: d.topk_dataset(None, np.ones((2, 2)), 1),
             lambda: d.recommend_all(None, None, 1)):
    try:
        call()
    except ImportError as exc:
        assert "pip install recfast[ray]" in str(exc), exc
    else:
        raise SystemExit("no ImportError")
print("ok")
"""


def test_imports_without_ray_and_names_the_extra():
    r = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr
