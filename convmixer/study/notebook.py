"""What every experiment notebook does before it trains, in one call, so the notebooks hold no logic."""

from __future__ import annotations

from .. import backend as keras_backend
from .. import paths
from .plan import Trial, plan


def start(
    experiment: str, profile: str, values=None, seeds=None, persist_dir=None, backend="auto", device_type=None
) -> list[Trial]:
    """Keep runs and caches under `persist_dir` and choose the Keras backend (both must come before
    Keras is imported), then plan the experiment's trials and print what will train them."""
    paths.persist_to(persist_dir)
    keras_backend.use(backend)
    trials = plan(experiment, profile, values, seeds, overrides={"device": device_type})
    from .. import device  # imports Keras, on the backend just chosen

    print(device.summary(trials[0].config.device, trials[0].config.devices))
    return trials
