"""ConvMixer reproducibility suite: model, data, training, run records, collation, plots."""

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # keep TensorFlow's C++ start-up chatter out of notebooks

# Keras falls back to TensorFlow when nothing names a backend; where only JAX is installed
# (Colab's TPU runtimes, a JAX-only GPU machine) that would fail at `import keras`.
if "KERAS_BACKEND" not in os.environ and "keras" not in sys.modules:
    from . import backend as _backend

    try:
        os.environ["KERAS_BACKEND"] = _backend.choose("auto")
    except _backend.ConfigError:
        pass  # no backend installed: `import keras` says so itself
