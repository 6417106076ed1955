"""Configs and params files: every bad input is one clear line before anything trains."""

import pytest

from convmixer import cli, paths, study
from convmixer.config import ConfigError, TrialConfig, load_yaml
from convmixer.study import suite

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    "values, message",
    [
        ({"widht": 64}, "unknown key 'widht' (did you mean 'width'?)"),
        ({"width": "64"}, "width must be int, got '64'"),
        ({"flip": 1}, "flip must be bool, got 1"),
        ({"epochs": 2.5}, "epochs must be int, got 2.5"),
        ({"patch_size": 3}, "patch_size 3 does not divide the 32x32 images of cifar10"),
        ({"dataset": "tiny-imagenet", "patch_size": 7}, "patch_size 7 does not divide the 64x64"),
        ({"kernel_size": 0}, "kernel_size must be >= 1, got 0"),
        ({"kernel_sizes": []}, "kernel_sizes is empty"),
        ({"kernel_sizes": [3, 0]}, "kernel_sizes must all be >= 1, got 0"),
        ({"kernel_sizes": "3,5"}, "kernel_sizes must be a list of integers"),
        ({"dataset": "imagenet"}, "unknown dataset 'imagenet' (choose from: cifar10, tiny-imagenet, folder)"),
        ({"optimizer": "lamb"}, "unknown optimizer 'lamb'"),
        ({"learning_rate": 0}, "learning_rate must be > 0"),
        ({"batch_size": None}, "batch_size may not be null"),
        ({"ema_momentum": 1.0}, "ema_momentum must be in [0, 1), got 1.0"),
        ({"ema_momentum": 0.99, "early_stopping_patience": 2}, "ema_momentum and early_stopping_patience exclude"),
        ({"epoch_image_sizes": [17]}, "epoch_image_sizes: 17 is not a multiple of patch_size 2"),
        ({"epoch_image_sizes": [40]}, "epoch_image_sizes: 40 is outside 2..32 (patch size..full size)"),
        ({"epoch_image_sizes": [16] * 3, "epochs": 2}, "epoch_image_sizes must list 1 to epochs (2) sizes, got 3"),
        ({"epoch_image_sizes": []}, "epoch_image_sizes must list 1 to epochs (10) sizes, got 0"),
        ({"epoch_image_sizes": [16], "ema_momentum": 0.99}, "epoch_image_sizes and ema_momentum exclude each other"),
        ({"epoch_image_sizes": [16], "early_stopping_patience": 1}, "epoch_image_sizes and early_stopping_patience"),
        ({"dataset": "folder", "epoch_image_sizes": [16]}, "epoch_image_sizes needs a known image size"),
    ],
)
def test_bad_trial_settings_are_one_line_errors(values, message):
    with pytest.raises(ConfigError) as error:
        TrialConfig.from_dict(values)
    assert message in str(error.value)
    assert "\n" not in str(error.value)


def test_valid_config_round_trips():
    config = TrialConfig.from_dict({"kernel_sizes": [2, 4], "learning_rate": 1, "patch_size": 4})
    assert config.kernel_sizes == (2, 4) and config.learning_rate == 1.0
    assert TrialConfig.from_dict(config.to_dict()) == config


def test_progressive_resizing_trains_in_stages_of_one_image_size():
    config = TrialConfig.from_dict({"epochs": 6, "epoch_image_sizes": [16, 16, 24, 32, 24]})
    assert config.training_stages() == [(0, 2, 16), (2, 3, 24), (3, 4, None), (4, 5, 24), (5, 6, None)]
    assert TrialConfig(epochs=3).training_stages() == [(0, 3, None)]
    assert TrialConfig.from_dict(config.to_dict()) == config
    assert config.epoch_sizes() == [16, 16, 24, 32, 24, 32]
    # Full-size images throughout is no progressive resizing: one spelling, one identity.
    assert TrialConfig.from_dict({"epoch_image_sizes": [32, 32]}) == TrialConfig()
    assert TrialConfig.from_dict({"epoch_image_sizes": [32], "ema_momentum": 0.9}).epoch_image_sizes is None


def test_one_identity_per_trial():
    config = TrialConfig.from_dict({"kernel_sizes": [2, 4], "patch_size": 4})
    # What does not change the result is not part of the identity...
    for same_maths in ({"data_dir": "/elsewhere"}, {"fused": False}, {"jit_compile": True}, {"mixing": "parallel"}):
        assert config.replace(**same_maths).trial_id() == config.trial_id(), same_maths
    # ...what does is, and the seed only in the trial's, not the setting's, identity.
    assert config.replace(learning_rate=0.01).trial_id() != config.trial_id()
    assert config.replace(seed=1).trial_id() != config.trial_id()
    assert config.replace(seed=1).setting_id() == config.setting_id()
    # One spelling: defaults folded, a single "dynamic" kernel is that kernel, native size is no resize.
    assert TrialConfig(kernel_size=5).trial_id() == TrialConfig().trial_id()
    assert TrialConfig(kernel_sizes=[9]).trial_id() == TrialConfig(kernel_size=9).trial_id()
    assert TrialConfig(kernel_sizes=[9]).kernel_sizes is None
    assert TrialConfig(image_size=32).trial_id() == TrialConfig().trial_id()
    assert TrialConfig().identity() == {}


def test_a_new_setting_with_a_default_keeps_old_identities():
    """Folding defaults: a record written before a setting existed has the same identity now."""
    old_record = TrialConfig(width=128, seed=1).to_dict()
    del old_record["label_smoothing"]  # as if label_smoothing had been added since
    assert TrialConfig.from_dict(old_record).trial_id() == TrialConfig(width=128, seed=1).trial_id()


def test_val_size_zero_trains_without_validation_but_not_with_early_stopping():
    assert TrialConfig(val_size=0).val_size == 0
    with pytest.raises(ConfigError, match="early_stopping_patience needs a validation split"):
        TrialConfig(val_size=0, early_stopping_patience=2)


def test_yaml_is_loaded_safely(tmp_path):
    evil = tmp_path / "evil.yaml"
    evil.write_text("trial: !!python/object/apply:os.system ['touch pwned']\n")
    with pytest.raises(ConfigError, match="malformed YAML at line 1"):
        load_yaml(evil)
    assert not (tmp_path / "pwned").exists()


@pytest.mark.parametrize(
    "text, message",
    [
        ("trial: {width: 3\n", "malformed YAML at line 2"),
        ("- a\n- b\n", "expected a mapping at the top level, got list"),
    ],
)
def test_malformed_yaml(tmp_path, text, message):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_yaml(path)


@pytest.fixture
def params(tmp_path, monkeypatch):
    """A copy of params/ that a test may break."""
    import shutil

    shutil.copytree(paths.params_dir(), tmp_path / "params")
    monkeypatch.setenv("CONVMIXER_PARAMS", str(tmp_path / "params"))
    return tmp_path / "params"


def test_unknown_profile_and_experiment():
    with pytest.raises(ConfigError, match=r"unknown profile 'smok' \(choose from: .*smoke"):
        study.plan("baseline", "smok")
    with pytest.raises(ConfigError, match=r"unknown experiment 'patch'"):
        study.plan("patch", "smoke")


def test_unknown_yaml_keys_in_params(params):
    (params / "profiles" / "typo.yaml").write_text("trial: {epochz: 3}\n")
    with pytest.raises(ConfigError, match=r"unknown key 'epochz' \(did you mean 'epochs'\?\)"):
        study.plan("baseline", "typo")
    (params / "profiles" / "typo.yaml").write_text("trail: {epochs: 3}\n")
    with pytest.raises(ConfigError, match=r"unknown key 'trail' \(did you mean 'trial'\?\)"):
        study.plan("baseline", "typo")
    (params / "profiles" / "typo.yaml").write_text("experiments: {patch_sweep: {value: [2]}}\n")
    with pytest.raises(ConfigError, match=r"experiments.patch_sweep: unknown key 'value' \(did you mean 'values'\?\)"):
        study.plan("patch_sweep", "typo")


def test_a_bad_value_in_a_sweep_fails_the_plan_naming_the_trial():
    with pytest.raises(ConfigError, match=r"patch_sweep \(smoke\), patch_size=3 seed=0: patch_size 3"):
        study.plan("patch_sweep", "smoke", values=[2, 3])
    with pytest.raises(ConfigError, match="kernel_size must be >= 1, got 0"):
        study.plan("kernel_sweep", "smoke", values=[0])
    with pytest.raises(ConfigError, match="kernel_sizes is empty"):
        study.plan("dynamic_kernel", "smoke", values=[[]])
    with pytest.raises(ConfigError, match="list of seeds is empty"):
        study.plan("baseline", "smoke", seeds=[])


def test_plan_names_trials_and_applies_layers_of_settings():
    trials = study.plan("dynamic_kernel", "smoke", seeds=[0, 1])
    assert [t.run_name for t in trials] == [
        "kernel_sizes=5_seed0",
        "kernel_sizes=5_seed1",
        "kernel_sizes=2-3-5_seed0",
        "kernel_sizes=2-3-5_seed1",
    ]
    assert trials[2].config.kernel_sizes == (2, 3, 5) and trials[1].config.seed == 1
    assert trials[0].config.width == 32  # from the smoke profile


def test_settings_apply_in_the_documented_order(params):
    """experiment file < profile trial < profile experiments.X.trial < overrides < value and seed."""
    (params / "experiments" / "adamw.yaml").write_text(
        "title: t\norder: 2\nvary: optimizer\nvalues: [adam]\n"
        "trial: {width: 8, depth: 3, epochs: 7, batch_size: 10, learning_rate: 0.5}\n"
    )
    (params / "profiles" / "layers.yaml").write_text(
        "trial: {depth: 4, epochs: 8, batch_size: 20, learning_rate: 0.25, optimizer: sgd}\n"
        "experiments: {adamw: {trial: {epochs: 9, batch_size: 30, optimizer: sgd}}}\n"
    )
    [trial] = study.plan("adamw", "layers", overrides={"batch_size": 40, "optimizer": "sgd"})
    config = trial.config
    assert (config.width, config.depth, config.epochs, config.batch_size) == (8, 4, 9, 40)
    assert config.learning_rate == 0.25  # the profile's trial setting beats the experiment's default
    assert config.optimizer == "adam"  # the varied value beats everything


def test_committed_cpu_records_are_trials_the_cpu_profile_plans_today():
    """Every record in reports/cpu/runs is a trial of the cpu profile as it plans today (the same
    identity), so a profile edit cannot silently orphan its results; planned trials still
    training elsewhere are the report's "not run" rows until their records land."""
    from convmixer import records

    planned = {(t.experiment, t.run_name): t.config.trial_id() for t in study.plan_profile("cpu")}
    run_dirs = records.find_run_dirs(paths.PROJECT_ROOT / "reports" / "cpu" / "runs")
    assert len(run_dirs) >= 20
    for run_dir in run_dirs:
        record = records.read_record(run_dir)
        assert planned[(record.experiment, record.run_name)] == records.recorded_trial_id(record), run_dir


def test_committed_gpu_records_are_trials_the_rescience_profile_plans_today():
    """Every record in reports/gpu-rescience is a trial of the rescience profile as it plans
    today (same identity), so a profile edit cannot silently orphan the GPU results."""
    from convmixer import records

    planned = {(t.experiment, t.run_name): t.config.trial_id() for t in study.plan_profile("rescience")}
    run_dirs = records.find_run_dirs(paths.PROJECT_ROOT / "reports" / "gpu-rescience" / "runs")
    assert len(run_dirs) >= 5
    for run_dir in run_dirs:
        record = records.read_record(run_dir)
        assert record.profile == "rescience"
        assert planned[(record.experiment, record.run_name)] == records.recorded_trial_id(record), run_dir


def test_list_show_prints_each_trials_resolved_settings(capsys):
    assert cli.main(["list", "--show", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "profile cpu: 27 trials" in out
    assert "dataset=cifar10" in out and "depth=8" in out  # shared by every trial
    patch = out[out.index("patch_sweep:") : out.index("kernel_sweep:")]
    assert "patch_size=4_seed0" in patch and " 9 " in patch  # the patch sweep runs at k=9
    baseline = out[out.index("baseline:") : out.index("adamw:")]
    assert "0.01" in baseline and "49" not in baseline.split("\n")[0]


def test_a_new_experiment_is_one_yaml_file(params, tmp_path):
    (params / "experiments" / "width_sweep.yaml").write_text(
        "title: Width sweep\norder: 6\nvary: width\nvalues: [16, 32]\nfigures: [sweep]\n"
        "claims:\n  - claim: Wider is better\n    sources: [trockman2022]\n"
        "    definition: test accuracy of the widest model minus the narrowest, at their last epoch\n"
        "    compare: [{first: largest, second: smallest, metric: test_accuracy, expect: higher}]\n"
    )
    registry = study.registry()
    assert [e.name for e in registry][-1] == "width_sweep"
    spec = registry[-1]
    assert spec.title == "Width sweep" and spec.figures == ("sweep",) and spec.claims[0].sources == ("trockman2022",)
    assert [t.run_name for t in study.plan("width_sweep", "smoke")] == ["width=16_seed0", "width=32_seed0"]
    # Its claims are judged like the shipped ones, from summaries of its runs.
    from records_factory import make_run

    from convmixer.report import claims, collate

    for seed, noise in enumerate([0.0, 0.01]):
        make_run(tmp_path, "width_sweep", "width", 16, seed, test_accuracy=0.40 + noise)
        make_run(tmp_path, "width_sweep", "width", 32, seed, test_accuracy=0.50 + noise)
    table = claims.claims(collate.summarise(collate.load_runs(tmp_path)))
    assert table.set_index("claim").loc["Wider is better", "verdict"] == "supported"
    # Running it needs its notebook, and says so in one line.
    with pytest.raises(ConfigError, match="experiment 'width_sweep' has no notebook: add notebooks/width_sweep.ipynb"):
        suite.run_suite("smoke", only=["width_sweep"], out_dir=tmp_path / "out")


@pytest.mark.parametrize(
    "text, message",
    [
        ("title: t\n", "missing 'order'"),
        ("title: t\norder: 1\nfigures: [pie]\n", "unknown figure 'pie'"),
        (
            "title: t\norder: 1\nclaims: [{claim: c, sources: [x], compare: [{first: a, second: b, metric: speed, "
            "expect: higher}]}]\n",
            "unknown metric 'speed'",
        ),
        (
            "title: t\norder: 1\nclaims: [{claim: c, sources: [x], compare: [{first: a, second: b, metric: gap}]}]\n",
            "missing 'expect'",
        ),
        (
            "title: t\norder: 1\nclaims: [{claim: c, sources: [x], compare: [{first: a, second: b, than: 0, "
            "metric: gap, expect: higher}]}]\n",
            "give either 'second' \\(a row\\) or 'than' \\(a number\\)",
        ),
        (
            "title: t\norder: 1\nclaims: [{claim: c, sources: [x], compare: [{first: a, than: zero, metric: gap, "
            "expect: higher}]}]\n",
            "'than' must be a finite number, got 'zero'",
        ),
        (
            "title: t\norder: 1\nclaims: [{claim: c, sources: [x], compare: [{first: a, than: .nan, metric: gap, "
            "expect: higher}]}]\n",
            "'than' must be a finite number, got nan",
        ),
        (
            "title: t\norder: 1\nclaims: [{claim: c, sources: [x], compare: [{first: a, than: 0, "
            "metric: train_flops, expect: higher}]}]\n",
            "'than' needs a measured metric: train_flops is a count, compare two rows",
        ),
    ],
)
def test_a_bad_experiment_file_is_one_clear_line(params, text, message):
    (params / "experiments" / "broken.yaml").write_text(text)
    with pytest.raises(ConfigError, match=message):
        study.registry()


def test_every_shipped_profile_plans_every_experiment():
    """...except the published settings, which only some profiles name (an error to ask for)."""
    for profile in study.available("profiles"):
        for experiment in study.experiment_names():
            if experiment == "replication" and profile in ("columbia", "paper", "tiny-cpu"):
                with pytest.raises(ConfigError, match=f"profile {profile}: .*lists no setting values"):
                    study.plan(experiment, profile)
                assert study.plan(experiment, profile, allow_empty=True) == []
            else:
                assert study.plan(experiment, profile)


def test_published_settings_are_named_with_their_own_seeds():
    trials = study.plan("replication", "cpu")
    assert [t.run_name for t in trials] == [
        "setting=rescience-p4-k9_seed0",
        "setting=rescience-p4-k9_seed1",
        "setting=rescience-p4-k9_seed2",
        "setting=keras-example_seed0",
        "setting=keras-example_seed1",
        "setting=keras-example_seed2",
        "setting=official-cifar10_seed0",
    ]
    keras, official = trials[3].config, trials[-1].config
    # The Keras example's recipe, whatever the cpu profile's own recipe is, tested as it tests.
    assert (keras.width, keras.patch_size, keras.kernel_size, keras.epochs, keras.evaluate) == (
        256,
        2,
        5,
        10,
        "best_val",
    )
    assert (keras.optimizer, keras.learning_rate, keras.weight_decay, keras.schedule) == (
        "adamw",
        1e-3,
        1e-4,
        "constant",
    )
    assert (keras.train_subset, keras.val_size, keras.crop_scale_min, keras.flip) == (None, 5000, 1.0, True)
    # The official recipe (its README's command) on all 50,000 training images, as the paper profile's.
    paper = study.plan("baseline", "paper")[0].config
    assert official.replace(val_size=paper.val_size, precision=paper.precision).identity(seed=False) == paper.identity(
        seed=False
    )
    assert (official.val_size, official.evaluate, official.train_subset) == (0, "last", None)
    # A notebook or the command line picks settings by name; its seeds replace the setting's.
    picked = study.plan("replication", "cpu", values=["rescience-p4-k9"], seeds=[7])
    assert [t.run_name for t in picked] == ["setting=rescience-p4-k9_seed7"]
    with pytest.raises(ConfigError, match="no setting named 'keras' .*rescience-p4-k9, keras-example"):
        study.plan("replication", "cpu", values=["keras"])


def test_columbia_patch_sweep_keeps_columbia_token_grids():
    trials = study.plan("patch_sweep", "columbia")
    grids = {t.value: t.config.resolved_image_size // t.value for t in trials}
    assert grids == {14: 64 // 14, 11: 64 // 11, 7: 64 // 7, 4: 64 // 4}


def test_a_list_parameter_given_as_text_names_papermills_yaml_form():
    """`papermill nb.ipynb out.ipynb -p values "[3]"` passes the text "[3]"; `-y` passes YAML."""
    with pytest.raises(
        ConfigError, match=r"^values must be a list, got the text '\[3\]': pass it as YAML, -y values '\[3\]'$"
    ):
        study.plan("kernel_sweep", "smoke", values="[3]")
    with pytest.raises(ConfigError, match=r"^seeds must be a list, got the text '0, 1'"):
        study.plan("kernel_sweep", "smoke", seeds="0, 1")
