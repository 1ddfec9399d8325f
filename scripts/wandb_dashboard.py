"""Kept for old commands: the workspace builder is `harness-dashboard` (harness/dashboard.py).

Usage: python scripts/wandb_dashboard.py --dry-run [--records multirun/<date>/<time>]
"""

from __future__ import annotations

import sys

from harness.dashboard import main

if __name__ == "__main__":
    sys.exit(main())
