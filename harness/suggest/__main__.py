"""`python -m harness.suggest <run dir | multirun dir> [--json] [key=value ...]`."""

from harness.suggest.cli import main

if __name__ == "__main__":
    main()
