"""`python -m recfast.bench`: the side-by-side top-k benchmark (see `recfast.bench.runner`)."""

import sys

from .runner import main

sys.exit(main())
