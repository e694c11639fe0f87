"""The version has one source (pyproject.toml): the metadata and the native module agree."""

from __future__ import annotations

from importlib.metadata import version

import recfast
from recfast import _core


def test_native_module_carries_the_package_version() -> None:
    assert recfast.__version__ == version("recfast")
    assert _core.__version__ == recfast.__version__
