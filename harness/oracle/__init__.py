"""Where to grow: an oracle of equal-cost edits and the scoring of signals that claim to predict it.

`harness-oracle BASE_RUN_DIR` (``cli.main``) and `harness-signals BASE_RUN_DIR ORACLE_DIR` (``cli.signals_main``);
see docs/DESIGN.md, "Where to grow".
"""
