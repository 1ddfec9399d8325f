"""`python -m harness.compare ...` is `harness-compare ...` (for environments without the console script)."""

import sys

from harness.compare.cli import main

sys.exit(main())
