"""The top-k benchmark, `python -m recfast.bench` (also `recfast bench`).

`runner` plans the rows and runs one worker process per contestant (`worker`), `check`
verifies every answer against float64, and `report` prints the tables, the JSON and the plots.
"""

from __future__ import annotations

from . import report
from .runner import main

__all__ = ["main", "report"]
