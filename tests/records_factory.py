"""Hand-made run records (written through the run-record schema, as the trainer writes them)
and executed-notebook stubs, for the collation and report tests."""

from __future__ import annotations

from pathlib import Path

import nbformat
import numpy as np

from convmixer import records
from convmixer.config import TrialConfig


def make_run(
    root: Path,
    experiment: str,
    vary: str | None = None,
    value=None,
    seed: int = 0,
    *,
    status: str = "complete",
    test_accuracy: float | None = 0.5,
    train_accuracy: float = 0.9,
    train_seconds: float = 10.0,
    params: int = 1000,
    finished: bool = True,
    device: str = "CPU: test machine",
    backend: str = "tensorflow",
    profile: str = "smoke",
    mixing_weights=None,
    error: str | None = None,
    test_accuracy_flip: float | None = None,
    reused_from: str | None = None,
    test_images: int = 40,
    train_images: int = 100,
    epoch_seconds: list[float] | None = None,
    correct=None,
    starts: list | None = None,
    **settings,
) -> Path:
    """Write <root>/runs/<experiment>/<run_name>/ with config.json, history.csv, metrics.json.

    `settings` are TrialConfig fields; `vary=value` is applied to them as the experiment does.
    The history's epochs take `epoch_seconds`, by default `train_seconds` in equal parts.
    With `finished=False` metrics.json is left out and history.csv stops halfway (an unfinished
    run). `correct` (a boolean array, one per test image of the split `SPLIT`) writes
    predictions.npz: right where True, and then `test_accuracy` is its mean.
    """
    if vary not in (None, "setting"):  # `setting` names a published setting: no field of its own
        settings[vary] = value
    config = TrialConfig.from_dict(
        {"dataset": "cifar10", "width": 16, "depth": 2, "epochs": 2, "seed": seed, **settings}
    )
    label = "-".join(map(str, value)) if isinstance(value, list) else value
    run_name = f"{vary}={label}_seed{seed}" if vary else f"baseline_seed{seed}"
    run_dir = Path(root) / "runs" / experiment / run_name
    run_dir.mkdir(parents=True)
    records.write_record(
        run_dir,
        records.RunRecord(
            experiment=experiment,
            profile=profile,
            run_name=run_name,
            vary=vary,
            value=value,
            seed=seed,
            config=config.to_dict(),
            trial_id=config.trial_id(),
            dataset={
                "name": config.dataset,
                "source": "hand-made",
                "num_classes": 10,
                "image_size": 32,
                "train": train_images,
                "val": 20,
                "test": len(correct) if correct is not None else test_images,
            },
            git_commit="0123456789abcdef",
            packages={"tensorflow": "2.21.0", "keras": "3.15.1"},
            backend=backend,
            device=device,
            precision="float32",
            created="2025-01-01T00:00:00",
            reused_from=reused_from,
            starts=starts or [],
        ),
    )
    epoch_seconds = epoch_seconds or [train_seconds / config.epochs] * config.epochs
    sizes = config.epoch_sizes()
    rows = ["epoch,loss,accuracy,val_loss,val_accuracy,lr,epoch_seconds,image_size"]
    rows += [
        f"{e},{2.0 / e},{train_accuracy * e / config.epochs},{2.2 / e},{0.4 * e / config.epochs},0.001,"
        f"{epoch_seconds[e - 1]},{sizes[e - 1]}"
        for e in range(1, (config.epochs if finished else config.epochs // 2) + 1)  # unfinished: stopped halfway
    ]
    (run_dir / "history.csv").write_text("\n".join(rows) + "\n")
    if correct is not None:
        correct = np.asarray(correct, bool)
        labels = np.arange(len(correct)) % 10
        split = {"images": len(correct), "files_sha256": f"{len(correct):064d}"}
        predicted = np.where(correct, labels, (labels + 1) % 10)
        records.write_predictions(
            run_dir / records.PREDICTIONS_FILE, records.Predictions(labels, predicted, None, split)
        )
        test_accuracy, test_images = float(correct.mean()), len(correct)
    if finished:
        complete = status == "complete"
        records.write_metrics(
            run_dir,
            records.Metrics(
                status=status,
                error=error,
                test_accuracy=test_accuracy if complete else None,
                test_loss=1.0 if complete else None,
                test_accuracy_flip=test_accuracy_flip,
                best_val_accuracy=0.4 if complete else None,
                best_epoch=config.epochs,
                final_train_accuracy=train_accuracy if complete else None,
                params=params,
                train_seconds=train_seconds if complete else None,
                images_per_second=20.0,
                epochs=config.epochs if complete else 0,
                kernel_sizes=list(config.kernel_sizes or [config.kernel_size]),
                mixing_weights=mixing_weights,
                finished="2025-01-01T00:01:00",
            ),
        )
    return run_dir


def make_notebook(root: Path, experiment: str, duration: float, exception: bool = False) -> Path:
    """An executed-notebook stub <root>/notebooks/<experiment>.ipynb with papermill metadata."""
    notebook = nbformat.v4.new_notebook()
    notebook.metadata["papermill"] = {
        "parameters": {"profile": "smoke"},
        "start_time": "2025-01-01T00:00:00",
        "end_time": "2025-01-01T00:10:00",
        "duration": duration,
        "exception": exception,
    }
    path = Path(root) / "notebooks" / f"{experiment}.ipynb"
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(notebook, path)
    return path


def make_study(root: Path) -> Path:
    """A small study on two machines covering every experiment; returns the folder of machine A."""
    a, b = Path(root) / "machine_a", Path(root) / "machine_b"
    gpu = "GPU: NVIDIA test card"
    keras_example = {
        "width": 256,
        "depth": 8,
        "patch_size": 2,
        "kernel_size": 5,
        "optimizer": "adamw",
        "epochs": 10,
        "evaluate": "best_val",
        "params": 594186,
    }  # the setting of the Keras example (83.7%), tested at its best validation epoch
    make_run(a, "baseline", test_accuracy=0.5, seed=0, **keras_example)
    make_run(a, "baseline", test_accuracy=0.7, seed=1, **keras_example)
    make_run(b, "baseline", test_accuracy=0.7, seed=1, device=gpu, **keras_example)  # a copy of A's seed 1
    make_run(a, "baseline", seed=2, finished=False, **keras_example)
    make_run(a, "baseline", seed=3, status="failed", error="ResourceExhaustedError: out of memory", **keras_example)
    for seed, (adam, adamw) in enumerate([(0.50, 0.60), (0.52, 0.62)]):
        make_run(a, "adamw", "optimizer", "adam", seed, test_accuracy=adam, train_accuracy=0.9)
        make_run(a, "adamw", "optimizer", "adamw", seed, test_accuracy=adamw, train_accuracy=0.8)
    for patch, accuracy, seconds in [(1, 0.66, 40.0), (2, 0.60, 20.0), (4, 0.50, 10.0)]:
        make_run(b, "patch_sweep", "patch_size", patch, test_accuracy=accuracy, train_seconds=seconds, device=gpu)
    for kernel, accuracy in [(3, 0.500), (5, 0.503), (9, 0.505)]:
        make_run(a, "kernel_sweep", "kernel_size", kernel, test_accuracy=accuracy)
    make_run(a, "dynamic_kernel", "kernel_sizes", [5], test_accuracy=0.55)
    make_run(
        a,
        "dynamic_kernel",
        "kernel_sizes",
        [3, 5],
        test_accuracy=0.58,
        mixing_weights={"block0_depthwise": [0.3, 0.7], "block1_depthwise": [0.6, 0.4]},
    )
    make_notebook(a, "baseline", duration=120.0)
    make_notebook(a, "kernel_sweep", duration=60.0, exception=True)
    return a


def row(table, **where):
    """The one row of `table` matching `where` (fails unless exactly one matches)."""
    import pandas as pd

    mask = pd.Series(True, index=table.index)
    for key, value in where.items():
        mask &= table[key] == value
    assert mask.sum() == 1, f"expected one row for {where}, found {mask.sum()}"
    return table[mask].iloc[0]
