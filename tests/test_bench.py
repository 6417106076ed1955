"""The speed benchmark's parts on a tiny ConvMixer: timing runs and the numbers are sane.

How fast things are is the benchmark's business, not the tests': these only check that
every measurement runs and gives a positive, finite number, and that the FLOP count and
the JSON entries are right.
"""

import json
import math

import keras
import numpy as np
import pytest
from backends import numpy

from convmixer import backend
from convmixer.bench import measure
from convmixer.bench import spec as bench_spec
from convmixer.model import build_convmixer, count_trainable_params

pytestmark = pytest.mark.training

TINY = bench_spec.Spec(width=16, depth=1, kernel_sizes=(3,), patch_size=4, image_size=32, num_classes=10)
TINY_MIXED = bench_spec.Spec(16, 1, (2, 3), 4, 32, 10, mixing="merged")
QUICK = bench_spec.Settings(batch_size=4, steps=2, warmup=1, reference=False, peak_size=64)


def positive(value) -> bool:
    return isinstance(value, float) and math.isfinite(value) and value > 0


def test_flops_match_a_hand_count():
    # 32/4 = 8x8 tokens of width 16: patch embedding 64*16*(3*4*4), depthwise 64*16*3*3,
    # pointwise 64*16*16, classifier 16*10 multiply-accumulates.
    macs = 64 * 16 * 48 + 64 * 16 * 9 + 64 * 16 * 16 + 16 * 10
    assert measure.model_flops(TINY) == {"macs": macs, "forward_flops": 2 * macs, "training_flops": 6 * macs}
    # Merged, the mix of k=2 and k=3 convolves once with a 3x3 kernel; parallel, with both.
    merged = measure.model_flops(TINY_MIXED)["macs"]
    parallel = measure.model_flops(bench_spec.Spec(16, 1, (2, 3), 4, 32, 10, mixing="parallel"))["macs"]
    assert merged == macs
    assert parallel - merged == 64 * 16 * 2 * 2


def test_select_expands_mixing_modes_and_rejects_unknown_names():
    names = [spec.name for spec in bench_spec.select(["256/8-k5-p2", "512/8-k2+4+6+8+10-p7"])]
    assert names == ["256/8-k5-p2", "512/8-k2+4+6+8+10-p7 merged", "512/8-k2+4+6+8+10-p7 parallel"]
    assert [s.image_size for s in bench_spec.select(["512/8-k9-p7"])] == [63]
    with pytest.raises(bench_spec.BenchError, match="unknown benchmark config '256/8'"):
        bench_spec.select(["256/8"])
    with pytest.raises(bench_spec.BenchError, match="warmup must be >= 1, got 0"):
        bench_spec.Settings(warmup=0)


def test_command_line_checks_settings_before_measuring(capsys):
    from convmixer import cli

    assert cli.main(["bench", "--configs", "nope", "--jit-compile", "--precision", "mixed_bfloat16"]) == 2
    assert "convmixer: error: unknown benchmark config 'nope'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.main(["bench", "--precision", "float64"])
    assert "invalid choice: 'float64'" in capsys.readouterr().err


def test_matmul_peak_is_positive():
    assert positive(measure.matmul_peak_flops("cpu", 64, repeats=1))


def test_run_times_package_and_pipeline_on_every_backend_and_writes_json(tmp_path):
    entries = measure.run([TINY, TINY_MIXED], QUICK, log=lambda line: None)
    installed = backend.installed()
    assert [(e["config"], e["backend"]) for e in entries] == [  # one configuration at a time
        (config, name) for config in ("16/1-k3-p4", "16/1-k2+3-p4 merged") for name in installed
    ]
    for entry in entries:
        assert set(bench_spec.ENTRY_KEYS) <= set(entry)
        for key in (
            "package_images_per_second",
            "package_step_seconds",
            "pipeline_images_per_second",
            "pipeline_ratio",
            "flop_utilisation",
            "peak_gflops",
            "model_gflops_per_image",
        ):
            assert positive(entry[key]), key
        assert entry["reference_images_per_second"] is None and entry["ratio"] is None  # reference skipped
        assert entry["batch_size"] == 4 and entry["steps"] == 2 and entry["packages"][entry["backend"]]
        # Which depthwise path ran: an 8x8 grid at k=3 is 7 pixels per tap (matrices under JAX only).
        assert entry["depthwise_paths"] == ["matrix" if entry["backend"] == "jax" else "keras"]
        assert entry["jit_compile"] == (entry["backend"] == "jax")  # as trials choose them on a CPU
        assert entry["onednn"] is (True if entry["backend"] == "tensorflow" else None)
        augmentations = " ".join(entry["augmentation"])
        for name in ("crop", "flip", "RandAugment (N=2, M=12)", "erasing", "MixUp", "CutMix"):
            assert name in augmentations
    assert all(positive(e["cost_vs_single_kernel"]) for e in entries if "+" in e["config"])
    path = measure.write(entries, tmp_path / "results.json")
    assert json.loads(path.read_text()) == json.loads(json.dumps(entries))
    markdown = measure.table(entries)
    assert "| 16/1-k2+3-p4 merged" in markdown and "package/reference" in markdown and "| backend" in markdown


def test_default_output_names_the_device_and_date():
    path = measure.default_output("CPU: AMD EPYC (2 cores)")
    assert path.parent == measure.RESULTS_DIR
    assert path.name.startswith("cpu-amd-epyc-2-cores-20") and path.suffix == ".json"


# The official padding="same" with even kernels makes PyTorch pad a copy of the input, and say so.
@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel")
def test_torch_reference_is_the_same_model_and_trains():
    import torch  # the bench extra, which the README's test command installs

    from convmixer.bench import torch_reference

    def params(model):
        return sum(p.numel() for p in model.parameters() if p.requires_grad)

    # The official architecture has exactly the package's trainable parameters (594,186, as
    # params/published.yaml gives for the Keras example).
    assert params(torch_reference.conv_mixer(256, 8, kernel_size=5, patch_size=2, n_classes=10)) == 594_186
    mixed = torch_reference.conv_mixer(16, 1, patch_size=4, n_classes=10, kernel_sizes=(2, 3))
    assert params(mixed) == count_trainable_params(build_convmixer(16, 1, 3, 4, 10, 32, kernel_sizes=[2, 3]))

    # Both forms of the mixed layer compute the same thing (even kernel included).
    layer = torch_reference.MixedDepthwise(4, (2, 4, 5))
    torch.nn.init.normal_(layer.alpha)
    x = torch.randn(2, 4, 9, 11)
    merged = layer(x)
    layer.merged = False
    torch.testing.assert_close(merged, layer(x), rtol=1e-4, atol=1e-4)

    speed = torch_reference.best_training_speed(16, 1, (2, 3), 4, 32, 10, batch_size=4, steps=1, warmup=1)
    assert speed["precision"] in torch_reference.candidate_precisions(speed["device"])
    assert positive(speed["images_per_second"]) and set(speed["by_precision"]) == set(
        torch_reference.candidate_precisions(speed["device"])
    )


@pytest.mark.parametrize("kernel_size", [5, 4])  # an even kernel too: both pad (k - 1) // 2 zeros first
def test_torch_reference_computes_what_the_keras_model_computes(kernel_size):
    """Keras' weights copied into the official PyTorch architecture give the same class
    probabilities on real images (inference mode, BatchNorm's moving statistics randomised too),
    so the benchmark times one computation in two frameworks."""
    import torch

    from convmixer.bench import torch_reference
    from convmixer.config import TrialConfig
    from convmixer.data import load_dataset
    from convmixer.model import CHANNEL_STATS

    keras.utils.set_random_seed(0)
    width, depth, patch = 16, 2, 4
    model = build_convmixer(width, depth, kernel_size, patch, num_classes=10, image_size=32)
    rng = np.random.default_rng(0)
    for layer in model.layers:  # BatchNorm's statistics moved off 0 and 1: inference mode is no identity
        if isinstance(layer, keras.layers.BatchNormalization):
            shape = layer.get_weights()[0].shape
            layer.set_weights(
                [
                    rng.normal(1, 0.2, shape),
                    rng.normal(0, 0.2, shape),
                    rng.normal(0, 0.2, shape),
                    rng.uniform(0.5, 2, shape),
                ]
            )
    reference = torch_reference.conv_mixer(width, depth, kernel_size=kernel_size, patch_size=patch, n_classes=10).eval()

    def tensor(array):
        return torch.from_numpy(np.ascontiguousarray(array))

    def copy_bn(keras_name, bn):
        gamma, beta, mean, variance = model.get_layer(keras_name).get_weights()
        for target, value in ((bn.weight, gamma), (bn.bias, beta), (bn.running_mean, mean), (bn.running_var, variance)):
            target.data.copy_(tensor(value))

    with torch.no_grad():
        kernel, bias = model.get_layer("patch_embed").get_weights()
        reference[0].weight.copy_(tensor(kernel.transpose(3, 2, 0, 1)))
        reference[0].bias.copy_(tensor(bias))
        copy_bn("patch_bn", reference[2])
        for i in range(depth):
            block = reference[3 + i]
            depthwise, gelu_bn = block[0].fn[0], block[0].fn[2]
            kernel, bias = model.get_layer(f"block{i}_depthwise").get_weights()
            depthwise.weight.copy_(tensor(kernel.transpose(2, 3, 0, 1)))  # (k, k, c, 1) -> (c, 1, k, k)
            depthwise.bias.copy_(tensor(bias))
            copy_bn(f"block{i}_depthwise_bn", gelu_bn)
            kernel, bias = model.get_layer(f"block{i}_pointwise").get_weights()
            block[1].weight.copy_(tensor(kernel.T[:, :, None, None]))
            block[1].bias.copy_(tensor(bias))
            copy_bn(f"block{i}_pointwise_bn", block[3])
        kernel, bias = model.get_layer("head").get_weights()
        reference[-1].weight.copy_(tensor(kernel.T))
        reference[-1].bias.copy_(tensor(bias))

        images = load_dataset(TrialConfig(data_dir="sample", val_size=0)).x_test[:64].astype("float32")
        mean, std = (np.array(v, "float32") for v in CHANNEL_STATS["cifar10"])
        standardised = ((images - mean) / std).transpose(0, 3, 1, 2)  # the official code normalises outside
        expected = torch.softmax(reference(tensor(standardised)), dim=1).numpy()
    got = numpy(model(images, training=False))
    np.testing.assert_allclose(got, expected, atol=2e-5)
    assert (got.argmax(axis=1) == expected.argmax(axis=1)).all()
    assert np.ptp(got, axis=0).max() > 100 * 2e-5  # the probabilities depend on the image: the check has teeth
