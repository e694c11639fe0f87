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

# Hypothesis: in CI (the environment variable CI set, as CI services do) every run draws the same
# examples (derandomized, no example database), so a failure there is reproducible and a pass
# does not depend on luck; without deadlines, since shared CI machines' timing varies; a failing
# example prints a blob that @reproduce_failure replays. Elsewhere hypothesis' default profile
# (random examples) applies. Recent hypothesis versions ship a like "ci" profile of their own;
# this one holds for every version the test extra allows.
try:
    from hypothesis import settings as _hypothesis_settings
except ImportError:  # the property tests need it; the others run without
    pass
else:
    _hypothesis_settings.register_profile(
        "ci", derandomize=True, deadline=None, print_blob=True, database=None
    )
    if os.environ.get("CI"):
        _hypothesis_settings.load_profile("ci")

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
