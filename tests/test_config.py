"""Configs and params files: every bad input is one clear line before anything trains."""

import pytest

from convmixer import experiments
from convmixer.config import ConfigError, TrialConfig, load_yaml


@pytest.mark.parametrize("values, message", [
    ({"widht": 64}, "unknown key 'widht'"),
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
])
def test_bad_trial_settings_are_one_line_errors(values, message):
    with pytest.raises(ConfigError) as error:
        TrialConfig.from_dict(values)
    assert message in str(error.value)
    assert "\n" not in str(error.value)


def test_valid_config_round_trips_and_hash_ignores_data_location():
    config = TrialConfig.from_dict({"kernel_sizes": [2, 4], "learning_rate": 1, "patch_size": 4})
    assert config.kernel_sizes == (2, 4) and config.learning_rate == 1.0
    assert TrialConfig.from_dict(config.to_dict()) == config
    assert config.replace(data_dir="/elsewhere").config_hash() == config.config_hash()
    assert config.replace(fused=False).config_hash() == config.config_hash()  # same maths
    assert config.replace(seed=1).config_hash() != config.config_hash()


def test_yaml_is_loaded_safely(tmp_path):
    evil = tmp_path / "evil.yaml"
    evil.write_text("trial: !!python/object/apply:os.system ['touch pwned']\n")
    with pytest.raises(ConfigError, match="malformed YAML at line 1"):
        load_yaml(evil)
    assert not (tmp_path / "pwned").exists()


@pytest.mark.parametrize("text, message", [
    ("trial: {width: 3\n", "malformed YAML at line 2"),
    ("- a\n- b\n", "expected a mapping at the top level, got list"),
])
def test_malformed_yaml(tmp_path, text, message):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_yaml(path)


@pytest.fixture
def params(tmp_path, monkeypatch):
    """A copy of params/ that a test may break."""
    import shutil
    shutil.copytree(experiments.params_dir(), tmp_path / "params")
    monkeypatch.setenv("CONVMIXER_PARAMS", str(tmp_path / "params"))
    return tmp_path / "params"


def test_unknown_profile_and_experiment():
    with pytest.raises(ConfigError, match=r"unknown profile 'smok' \(choose from: .*smoke"):
        experiments.plan("baseline", "smok")
    with pytest.raises(ConfigError, match=r"unknown experiment 'patch'"):
        experiments.plan("patch", "smoke")


def test_unknown_yaml_keys_in_params(params):
    (params / "profiles" / "typo.yaml").write_text("trial: {epochz: 3}\n")
    with pytest.raises(ConfigError, match="unknown key 'epochz'"):
        experiments.plan("baseline", "typo")
    (params / "profiles" / "typo.yaml").write_text("trail: {epochs: 3}\n")
    with pytest.raises(ConfigError, match="unknown key 'trail'"):
        experiments.plan("baseline", "typo")
    (params / "profiles" / "typo.yaml").write_text("experiments: {patch_sweep: {value: [2]}}\n")
    with pytest.raises(ConfigError, match="experiments.patch_sweep: unknown key 'value'"):
        experiments.plan("patch_sweep", "typo")


def test_a_bad_value_in_a_sweep_fails_the_plan_naming_the_trial():
    with pytest.raises(ConfigError, match=r"patch_sweep \(smoke\), patch_size=3 seed=0: patch_size 3"):
        experiments.plan("patch_sweep", "smoke", values=[2, 3])
    with pytest.raises(ConfigError, match="kernel_size must be >= 1, got 0"):
        experiments.plan("kernel_sweep", "smoke", values=[0])
    with pytest.raises(ConfigError, match="kernel_sizes is empty"):
        experiments.plan("dynamic_kernel", "smoke", values=[[]])
    with pytest.raises(ConfigError, match="list of seeds is empty"):
        experiments.plan("baseline", "smoke", seeds=[])


def test_plan_names_trials_and_applies_layers_of_settings():
    trials = experiments.plan("dynamic_kernel", "smoke", seeds=[0, 1])
    assert [t.run_name for t in trials] == ["kernel_sizes=5_seed0", "kernel_sizes=5_seed1",
                                            "kernel_sizes=2-3-5_seed0", "kernel_sizes=2-3-5_seed1"]
    assert trials[2].config.kernel_sizes == (2, 3, 5) and trials[1].config.seed == 1
    assert trials[0].config.optimizer == "adam"  # the experiment's setting beats the profile's
    assert trials[0].config.width == 32  # from the smoke profile


def test_every_shipped_profile_plans_every_experiment():
    for profile in experiments.available("profiles"):
        for experiment in experiments.available("experiments"):
            assert experiments.plan(experiment, profile)


def test_columbia_patch_sweep_keeps_columbia_token_grids():
    trials = experiments.plan("patch_sweep", "columbia")
    grids = {t.value: t.config.resolved_image_size // t.value for t in trials}
    assert grids == {14: 64 // 14, 11: 64 // 11, 7: 64 // 7, 4: 64 // 4}
