"""Thin absl binaries: parse flags, build a config, call the library."""

import os

# TensorFlow's C++ start-up chatter (oneDNN, CPU features) buries the binaries' own output.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
