"""The library's error types: every failure a user can cause raises one of these."""

import errno

DISK_FULL = (errno.ENOSPC, errno.EDQUOT)  # no space left, or the user's disk quota used up


class SketchError(Exception):
    """Base class for all errors the library raises on bad input."""


class DataFileError(SketchError):
    """A dataset file is missing, corrupt, hostile or of the wrong kind."""


class DrawingError(SketchError):
    """A drawing cannot be used: empty, malformed or not finite."""


class ModelFileError(SketchError):
    """A model directory or file is missing, corrupt or of the wrong kind."""


class TrainingError(SketchError):
    """Training cannot start or continue (locked run directory, full disk, bad settings)."""
