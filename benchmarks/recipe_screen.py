"""Screen recipe levers for the one-hour model (#16) on a fast device before spending CPU hours.

Each variant is the `cpu` profile's baseline trial (ConvMixer-128/8, p=2, k=5, 10 epochs,
one-cycle Adam) with a few settings changed, trained for two seeds. Every trial holds out
5,000 training images (the profile holds out 1,000), so each variant is scored on 7,000
images it never trained on: the held-out 5,000 and the 2,000-image test split of the archive.
A CPU hour then goes only to a lever that helps here; the verdict stays the CPU run's,
measured on the full test split.

    python benchmarks/recipe_screen.py --data-dir cifar10-jpeg.zip --out screen/ \
        --results benchmarks/results/recipe-screen.csv [--variants base,ema] [--seeds 0,1]

Trials resume (their run folders are kept), so an interrupted screen picks up where it stopped.
"""

import argparse
import time
from pathlib import Path

import keras
import pandas as pd

from convmixer.data import load_dataset
from convmixer.study import data_key, plan
from convmixer.train import measure_test_split, train

# Settings changed from the baseline; the epochs of "w160-e7" keep its training time near the
# baseline's on the 2-core CPU (width 160 costs about 1.45x width 128 per epoch).
VARIANTS = {
    "base": {},
    "ema": {"ema_momentum": 0.999},
    "crop-0.75": {"crop_scale_min": 0.75},
    "no-crop": {"crop_scale_min": 1.0},
    "ls-0.2": {"label_smoothing": 0.2},
    "lr-0.02": {"learning_rate": 0.02},
    "e11": {"epochs": 11},
    "w160-e7": {"width": 160, "epochs": 7},
    "k7": {"kernel_size": 7},
    "k9": {"kernel_size": 9},
    "bs64": {"batch_size": 64, "learning_rate": 0.005},
}


def screen(data_dir: str, out: Path, variants: list[str], seeds: list[int], results: Path) -> pd.DataFrame:
    baseline = plan("baseline", "cpu")[0].config
    rows, loaded = [], {}
    for seed in seeds:
        for name in variants:
            config = baseline.replace(
                **VARIANTS[name], seed=seed, data_dir=data_dir, val_size=5000, precision="float32"
            )
            if data_key(config) not in loaded:  # the variants share each seed's split: decode it once
                loaded[data_key(config)] = load_dataset(config)
            data = loaded[data_key(config)]
            run_dir = out / f"{name}_seed{seed}"
            started = time.perf_counter()
            metrics = train(config, run_dir, data=data, verbose=0)
            model = keras.saving.load_model(run_dir / "model.keras")
            held_out = measure_test_split(model, data.x_val, data.y_val, config)["test_accuracy"]
            rows.append(
                {
                    "variant": name,
                    "changes": VARIANTS[name],
                    "seed": seed,
                    "held_out_accuracy": held_out,
                    "held_out_images": len(data.y_val),
                    "test_accuracy": metrics.test_accuracy,
                    "test_images": len(data.y_test),
                    "final_train_accuracy": metrics.final_train_accuracy,
                    "epochs": metrics.epochs,
                    "train_seconds": metrics.train_seconds,
                    "wall_seconds": time.perf_counter() - started,
                }
            )
            pd.DataFrame(rows).to_csv(results, index=False)  # after every trial: a cut-off screen keeps its rows
            print(rows[-1], flush=True)
    return pd.DataFrame(rows)


def summary(results: pd.DataFrame) -> pd.DataFrame:
    """Per variant: mean accuracy on the 7,000 unseen images, and its difference from `base`."""
    unseen = (results.held_out_accuracy * results.held_out_images + results.test_accuracy * results.test_images) / (
        results.held_out_images + results.test_images
    )
    table = results.assign(unseen_accuracy=unseen).groupby("variant", sort=False)
    table = table.agg(
        seeds=("seed", "count"),
        unseen_accuracy=("unseen_accuracy", "mean"),
        unseen_std=("unseen_accuracy", "std"),
        test_accuracy=("test_accuracy", "mean"),
    )
    if "base" in table.index:
        table["vs_base_points"] = 100 * (table.unseen_accuracy - table.loc["base", "unseen_accuracy"])
    return table


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--results", type=Path, required=True, help="CSV of every trial screened")
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--seeds", default="0,1")
    args = parser.parse_args()
    variants = args.variants.split(",")
    unknown = sorted(set(variants) - set(VARIANTS))
    if unknown:
        parser.error(f"unknown variant {unknown[0]!r}; known: {', '.join(VARIANTS)}")
    results = screen(args.data_dir, args.out, variants, [int(seed) for seed in args.seeds.split(",")], args.results)
    print(summary(results).to_string(float_format=lambda value: f"{value:.4f}"))


if __name__ == "__main__":
    main()
