"""The grow loop (``experiment=grow_loop``): train, probe, let a policy grow the model, continue; one chain per job."""
