"""ConvMixer reproducibility suite: model, data, training, run records, collation, plots."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # keep TensorFlow's C++ start-up chatter out of notebooks
