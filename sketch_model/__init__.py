"""sketch_model: a faithful sketch-rnn (Ha & Eck 2017) in Keras 3."""

__version__ = "0.1.0"  # pyproject.toml reads it; train records it in every run directory

import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# TensorFlow's pooling allocator on the CPU: with the default one, every large tensor a
# training step makes is fresh memory from the kernel, and the page faults took longer than
# the arithmetic (benchmarks/train_throughput.py; it must be set before TensorFlow starts).
os.environ.setdefault("TF_CPU_ALLOCATOR_USE_BFC", "true")

from .config import HParams  # noqa: E402
from .errors import (DataFileError, DrawingError, ModelFileError, SketchError,  # noqa: E402
                     TrainingError)
from .sample import Sketcher, latent_path, load_model  # noqa: E402
from .strokes import fit_to_model  # noqa: E402

__all__ = ["HParams", "Sketcher", "load_model", "latent_path", "fit_to_model", "SketchError", "DataFileError",
           "DrawingError", "ModelFileError", "TrainingError"]
