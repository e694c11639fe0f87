"""`python -m recfast`: the recfast command line (see recfast.cli)."""

from __future__ import annotations

from .cli import main

raise SystemExit(main())
