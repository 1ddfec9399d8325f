from harness.run.variant import variant_name


def test_seed_and_logging_overrides_do_not_change_the_variant() -> None:
    assert variant_name(["+model.widen.mixed3b_5x5=32", "seed=1"]) == "model.widen.mixed3b_5x5=32"
    assert variant_name(["seed=2", "logger=csv", "trainer.accelerator=gpu", "probes=[curves]",
                         "probing.budget_s=9", "+model.widen.mixed3b_5x5=32"]) == (
        "model.widen.mixed3b_5x5=32"
    )


def test_order_does_not_matter_and_zero_widen_is_base() -> None:
    a = variant_name(["data.image_size=32", "+model.widen.conv2d2=8"])
    assert a == variant_name(["+model.widen.conv2d2=8", "data.image_size=32"])
    assert variant_name(["+model.widen.mixed3b_5x5=0", "seed=0"]) == "base"
    assert variant_name([]) == "base"


def test_training_changes_are_part_of_the_variant() -> None:
    assert variant_name(["trainer.max_epochs=2"]) == "trainer.max_epochs=2"
    assert variant_name(["model.widen.mixed3b_5x5=10"]) != variant_name(["model.widen.mixed3b_5x5=100"])


def test_settings_shared_by_a_sweep_name_no_variant_but_a_shared_model_edit_does(tmp_path) -> None:
    from harness.run.variant import shared_sweep_keys

    (tmp_path / "multirun.yaml").write_text(
        "hydra:\n  overrides:\n    task:\n    - seed=0,1\n    - +model.widen.mixed3b_5x5=32\n"
        "    - model.width=0.25,0.5\n    - trainer.max_epochs=2\n    - data.train_size=256\n"
    )
    shared = shared_sweep_keys(tmp_path)
    assert sorted(shared) == ["data.train_size", "trainer.max_epochs"]
    job = ["seed=1", "+model.widen.mixed3b_5x5=32", "model.width=0.5", "trainer.max_epochs=2", "data.train_size=256"]
    assert variant_name(job, shared) == "model.widen.mixed3b_5x5=32,model.width=0.5"
    assert shared_sweep_keys(tmp_path / "missing") == []


def test_single_run_is_named_by_its_edit_not_its_budget() -> None:
    typed = ["data.test_size=256", "data.train_size=1024", "data.val_size=256", "+model.widen.mixed3b_5x5=16",
             "trainer.max_epochs=1", "data.batch_size=64", "trainer.limit_train_batches=3", "verbose=true"]  # fmt: skip
    assert variant_name(typed, single=True) == "model.widen.mixed3b_5x5=16"
    assert variant_name(["trainer.max_epochs=1", "data.train_size=64"], single=True) == "base"


def test_single_run_keeps_what_changes_the_model_or_the_task() -> None:
    kept = ["model=torchvision", "data=cifar10", "data.classes=[line,corner,texture]", "model.width=0.5",
            "module.optimizer.lr=0.01", "curve_widen.channels=8", "model.insert=[mixed3b]",
            "data.image_size=32"]  # fmt: skip
    for override in kept:
        assert variant_name([override, "trainer.max_epochs=1"], single=True) == override, override
    a = variant_name(["+model.widen.mixed3b_5x5=16", "trainer.max_epochs=1"], single=True)
    b = variant_name(["+model.widen.mixed3b_5x5=32", "trainer.max_epochs=1"], single=True)
    assert a != b  # edits name a variant; a negative control for the budget rule


def test_sweeps_keep_budget_keys_that_vary() -> None:
    # In a sweep an epoch scan is the experiment: only shared keys are dropped (see shared_sweep_keys).
    assert variant_name(["trainer.max_epochs=2", "seed=0"], shared=["data.train_size"]) == "trainer.max_epochs=2"


def test_own_model_is_named_by_its_class() -> None:
    overrides = ["model=custom", "model._target_=mynet.MyNet", "+model.widen.body.4=8", "seed=1"]
    assert variant_name(overrides, single=True) == "MyNet,model.widen.body.4=8"
    assert variant_name(["model=custom", "model._target_=MyNet"]) == "MyNet"
    assert variant_name(["model=custom"]) == "model=custom"  # no class given: nothing to shorten
