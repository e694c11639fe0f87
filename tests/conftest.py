"""Shared fixtures: SIMD levels of this machine, seeded data."""

from __future__ import annotations

import os
import sys
import warnings

import pytest

# Hypothesis imports libcst when it reports a failure (to write a patch file); libcst triggers a
# DeprecationWarning from mypy_extensions, which `filterwarnings = error` would turn into an
# INTERNALERROR hiding the real failure. Import it once here with that warning silenced.
with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    try:
        import libcst  # noqa: F401
        import libcst.metadata  # noqa: F401
    except ImportError:
        pass

# Let test modules import the shared helper (tests/ is not a package).
sys.path.insert(0, os.path.dirname(__file__))

from recfast import _core  # noqa: E402
from helpers import available_simd_levels  # noqa: E402


@pytest.fixture(params=available_simd_levels())
def simd_level(request: pytest.FixtureRequest):
    """Run the test at one SIMD level, then restore the level in use before."""
    before = _core.simd_level()
    _core.set_simd_level(request.param)
    assert _core.simd_level() == request.param
    try:
        yield request.param
    finally:
        _core.set_simd_level(before)

