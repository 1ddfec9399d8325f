"""Hydra sweepers the harness ships where no maintained plugin does the job (see each module's docstring)."""
