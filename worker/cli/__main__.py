"""`python -m worker.cli ...`: the same commands as the `b24-delivery` console script."""

import sys

from worker.cli import main

sys.exit(main())
