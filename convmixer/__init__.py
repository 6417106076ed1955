"""ConvMixer reproducibility suite: model, data, training, run records, collation, plots."""

import os
import sys

# Quiet by default: TensorFlow's C++ notes and warnings stay out of notebooks and logs unless the user
# set TF_CPP_MIN_LOG_LEVEL (or passed `convmixer ... --verbose`); its errors still show. The lines
# TensorFlow 2.21 logs before absl::InitializeLog() ignore this (abseil/abseil-cpp#1957): notebooks'
# HTML leaves stderr out, the CLI's logs keep it.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# TensorFlow's oneDNN CPU kernels. TensorFlow leaves them off on CPUs without Intel's AVX-512 or AMX
# (this suite's AMD EPYC), where they train ConvMixer 1.3 to 2.5x faster (benchmarks/README.md).
# TensorFlow reads this once, when it is imported; TF_ENABLE_ONEDNN_OPTS=0 turns them off.
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")

# Keras falls back to TensorFlow when nothing names a backend; where only JAX is installed
# (Colab's TPU runtimes, a JAX-only GPU machine) that would fail at `import keras`.
if "KERAS_BACKEND" not in os.environ and "keras" not in sys.modules:
    from . import backend as _backend

    try:
        os.environ["KERAS_BACKEND"] = _backend.choose("auto")
    except _backend.ConfigError:
        pass  # no backend installed: `import keras` says so itself
