"""Hyperparameters: one dataclass with the names and defaults of the reference sketch-rnn."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import Any, Callable

from .errors import ModelFileError
from .files import read_json

FORMAT_VERSION = 1
RECURRENCE_GRADIENTS = ("auto", "batched", "autodiff")  # see HParams.recurrence_gradient

# Constants of the model's maths, shared by the Keras model and the numpy sampler (which must
# not need Keras: the drawing pages draw without loading TensorFlow).
LN_EPSILON = 1e-3  # the reference's layer-norm epsilon
LOG_SIGMA_LIMIT = 10.0  # log(sigma) of each Gaussian is clipped to +-this (losses.py says why)
CORR_LIMIT = 5.0  # the correlation's pre-activation is clipped to +-this
POSITION_SCALE = 0.1  # position_input: absolute positions in model units span about +-10 on the sheep

# Sampling's default pen temperature: lifts and ends at the model's own probabilities
# (sketch_model/sample.py says why this is not the paper's tau).
PEN_TEMPERATURE = 1.0


_KIND_NAMES = {int: "a whole number", float: "a number", bool: "true or false", str: "text"}
_MAX_UNITS = 16384  # far above the paper's 2048: a larger model would not fit in memory
# Field -> (test, what it must be); the types are checked first, floats are finite.
_RANGES: dict[str, tuple[Callable[[Any], bool], str]] = {
    "num_steps": (lambda v: 1 <= v <= 10**12, "at least 1 (and at most 10**12)"),
    "save_every": (lambda v: 1 <= v <= 10**12, "at least 1 (and at most 10**12)"),
    "max_seq_len": (lambda v: 1 <= v <= 100_000, "between 1 and 100000"),
    "batch_size": (lambda v: 1 <= v <= 100_000, "between 1 and 100000"),
    "num_mixture": (lambda v: 1 <= v <= 1000, "between 1 and 1000"),
    "bucket_width": (lambda v: 1 <= v <= 100_000, "between 1 and 100000"),
    "seed": (lambda v: 0 <= v < 2**32, "between 0 and 2**32 - 1"),
    "kl_weight": (lambda v: v >= 0, "0 or more"),
    "kl_weight_start": (lambda v: v >= 0, "0 or more"),
    "kl_tolerance": (lambda v: v >= 0, "0 or more"),
    "grad_clip": (lambda v: v > 0, "a positive number (the gradients are clipped to it)"),
    "learning_rate": (lambda v: v > 0, "a positive number"),
    "min_learning_rate": (lambda v: v >= 0, "0 or more"),
    "decay_rate": (lambda v: 0 < v <= 1, "in (0, 1]"),
    "kl_decay_rate": (lambda v: 0 < v <= 1, "in (0, 1]"),
    "random_scale_factor": (lambda v: 0 <= v < 1, "in [0, 1)"),
    "augment_stroke_prob": (lambda v: 0 <= v <= 1, "a probability in [0, 1]"),
    **{name: (lambda v: 1 <= v <= _MAX_UNITS, f"between 1 and {_MAX_UNITS}")
       for name in ("dec_rnn_size", "enc_rnn_size", "z_size", "hyper_num_units",
                    "hyper_embedding_size")},
}


@dataclasses.dataclass
class HParams:
    """Model and training settings; defaults are those of magenta's sketch_rnn/model.py."""

    num_steps: int = 10_000_000  # total training steps (the train command's --steps overrides)
    save_every: int = 500  # validate and checkpoint every this many steps
    max_seq_len: int = 250  # longer sketches are dropped; N_max in the loss normalisation
    dec_rnn_size: int = 512
    dec_model: str = "lstm"  # lstm | layer_norm | hyper
    enc_rnn_size: int = 256  # per direction of the bidirectional encoder
    enc_model: str = "lstm"  # lstm | layer_norm
    z_size: int = 128
    kl_weight: float = 0.5
    kl_weight_start: float = 0.01
    kl_tolerance: float = 0.2
    batch_size: int = 100
    grad_clip: float = 1.0
    num_mixture: int = 20
    learning_rate: float = 0.001
    decay_rate: float = 0.9999
    kl_decay_rate: float = 0.99995
    min_learning_rate: float = 0.00001
    use_recurrent_dropout: bool = True
    recurrent_dropout_prob: float = 0.90  # keep probability
    use_input_dropout: bool = False
    input_dropout_prob: float = 0.90  # keep probability
    use_output_dropout: bool = False
    output_dropout_prob: float = 0.90  # keep probability
    random_scale_factor: float = 0.15
    augment_stroke_prob: float = 0.10
    # Not in the paper: uniform noise of this width (data units) added to each training offset.
    # 1.0 dequantises integer data; 0.0 trains on the data as it is, as the paper does.
    dequantize: float = 0.0
    conditional: bool = True
    hyper_num_units: int = 256
    hyper_embedding_size: int = 32
    seed: int = 0  # seeds weights, data order, augmentation, dropout and z noise
    bucket_width: int = 10  # batches are padded to a multiple of this (fewer retraces)
    # Not in the paper: the dtype of the cells' main matrix products in training and evaluation
    # (float32 | bfloat16; bfloat16 is faster where the hardware has it, e.g. CPUs with AMX).
    # Sampling always runs in float32.
    matmul_dtype: str = "float32"
    # How training differentiates each cell's loop (the same gradients either way): "batched"
    # takes the weights' gradients for all steps at once after the loop; "autodiff" leaves
    # every step to the framework; "auto" takes the faster for each cell on a CPU (measured:
    # batched for lstm and layer_norm, autodiff for hyper). sketch_model/cells.py says more.
    recurrence_gradient: str = "auto"
    # Not in the paper: the decoder also reads the pen's absolute position (the sum of the
    # moves so far, model units, times POSITION_SCALE), so that z can tell it where to go.
    position_input: bool = False
    # Not in the paper: in training, the standard deviation (model units) of Gaussian noise on
    # each absolute point the decoder reads, with targets that lead back to the true path.
    history_noise: float = 0.0
    # Not in the paper: in training, the share of sketches whose encoder sees only a random
    # prefix (cut after a random whole stroke) while the decoder learns the whole sketch, so
    # that the z of a partial drawing stands for the drawings it could become. Such a model's
    # encoder reads the last point of a whole sketch as an end of sketch (pen state p3), not
    # as the pen lift that ends every stroke, so that z can tell a finished drawing from one
    # cut after a stroke (in training and after: Sketcher.encode's `whole`).
    encode_prefix_prob: float = 0.0
    # Not in the paper: training updates only the encoder (its cells and the mu and presig
    # layers); the decoder, its initial-state layer and the mixture head keep their weights.
    # With encode_prefix_prob on a trained VAE, the encoder learns to map a partial drawing to
    # a z of whole drawings that the decoder already draws, and the decoder's drawing from the
    # prior (its samples, its ending rate) stays exactly as it was.
    train_encoder_only: bool = False

    def __post_init__(self) -> None:
        if self.dec_model not in ("lstm", "layer_norm", "hyper"):
            raise ValueError(f"dec_model must be lstm, layer_norm or hyper, not {self.dec_model!r}")
        if self.enc_model not in ("lstm", "layer_norm"):
            raise ValueError(f"enc_model must be lstm or layer_norm, not {self.enc_model!r}")
        self._check_types_and_ranges()
        if self.train_encoder_only and not self.conditional:
            raise ValueError("train_encoder_only needs a VAE (conditional=true): an "
                             "unconditional model has no encoder")
        if self.matmul_dtype not in ("float32", "bfloat16"):
            raise ValueError(f"matmul_dtype must be float32 or bfloat16, not {self.matmul_dtype!r}")
        if self.recurrence_gradient not in RECURRENCE_GRADIENTS:
            raise ValueError(f"recurrence_gradient must be auto, batched or autodiff, "
                             f"not {self.recurrence_gradient!r}")
        if not 0.0 <= self.history_noise < math.inf:
            raise ValueError(f"history_noise must be a finite number >= 0, not {self.history_noise}")
        if not 0.0 <= self.encode_prefix_prob <= 1.0:
            raise ValueError(f"encode_prefix_prob is a probability in [0, 1], not {self.encode_prefix_prob}")
        if not 0.0 <= self.dequantize < math.inf:
            raise ValueError(f"dequantize is a noise width in data units, 0 or more, not {self.dequantize}")
        for name in ("recurrent_dropout_prob", "input_dropout_prob", "output_dropout_prob"):
            if not 0.0 < getattr(self, name) <= 1.0:
                raise ValueError(f"{name} is a keep probability in (0, 1], not {getattr(self, name)}")

    def _check_types_and_ranges(self) -> None:
        """Each field of its default's type (a float finite, an int whole) and in its range."""
        for field in dataclasses.fields(self):
            value, kind = getattr(self, field.name), type(field.default)
            if kind is float:
                ok = isinstance(value, (int, float)) and not isinstance(value, bool)
                if ok and not math.isfinite(value):
                    raise ValueError(f"{field.name} must be a finite number, not {value}")
            else:
                ok = isinstance(value, kind) and (kind is bool or not isinstance(value, bool))
            if not ok:
                raise ValueError(f"{field.name} must be {_KIND_NAMES[kind]}, not {value!r}")
            check = _RANGES.get(field.name)
            if check and not check[0](value):
                raise ValueError(f"{field.name} must be {check[1]}, not {value}")

    def replace(self, **changes: Any) -> "HParams":
        return dataclasses.replace(self, **changes)

    def with_overrides(self, assignments: list[str]) -> "HParams":
        """Apply `NAME=VALUE` strings (the command line's --set), converting to each field's type."""
        fields = {f.name: f for f in dataclasses.fields(self)}
        changes: dict[str, Any] = {}
        for item in assignments:
            name, sep, text = item.partition("=")
            name = name.strip()
            if not sep or name not in fields:
                raise ValueError(f"--set expects NAME=VALUE with NAME one of: {', '.join(fields)}; got {item!r}")
            kind = type(getattr(self, name))
            if kind is bool:
                if text.lower() not in ("true", "false", "1", "0"):
                    raise ValueError(f"{name} is true or false, not {text!r}")
                changes[name] = text.lower() in ("true", "1")
            else:
                try:
                    changes[name] = kind(text)
                except ValueError:
                    raise ValueError(f"{name} expects a {kind.__name__}, not {text!r}") from None
        return self.replace(**changes)

    def to_dict(self) -> dict[str, Any]:
        return {"format_version": FORMAT_VERSION, **dataclasses.asdict(self)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "HParams":
        """Rebuild from `to_dict` output; unknown keys or a newer format are refused."""
        data = dict(data)
        version = data.pop("format_version", None)
        if version != FORMAT_VERSION or isinstance(version, bool):
            raise ModelFileError(
                f"hparams format version {version!r} is not supported (this library reads version "
                f"{FORMAT_VERSION}); was the model made by another version of sketch_model?")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ModelFileError(f"hparams carry unknown settings {unknown}: made by another version?")
        try:
            return cls(**data)
        except (TypeError, ValueError) as err:
            raise ModelFileError(f"hparams are invalid: {err}") from None

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> "HParams":
        data = read_json(path, {})  # a regular file of at most files.MAX_JSON_BYTES
        try:
            return cls.from_dict(data)
        except ModelFileError as err:
            raise ModelFileError(f"{path}: {err}") from None
