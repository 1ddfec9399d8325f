"""Torch-free facts every layer stands on: nothing here imports torch, Lightning or another harness package.

- ``errors``: the one exception type for bad user input (and a diverged run);
- ``runs``: find, load and flatten run records (``record.json``);
- ``stats``: the statistics behind every verdict;
- ``keys``: every record key (training metric names, probe keys and bins);
- ``edits``: InceptionV1's width table, branch names and widen/insert plans;
- ``overrides``: the edit grammar (an edit as Hydra overrides, composing edits);
- ``family``: what a model can do, read from its config (InceptionV1's plan or any traced model);
- ``conf_dir``: where the shipped Hydra configs are.

Why a folder: harness-compare and harness-suggest read runs without torch, and ``tests/test_facts.py``
imports each module here in a fresh interpreter and fails if torch comes with it.
"""
