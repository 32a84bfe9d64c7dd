"""Exceptions raised by swiftcam.

Every error derives from :class:`SwiftCAMError`, so ``except swiftcam.SwiftCAMError`` catches
them all, and also from the builtin exception a Python user would expect for that kind of
failure, so ``except ValueError`` or ``except OSError`` keep working.

Each status code of the C ABI (``swiftcam_status`` in ``swiftcam.h``) maps to one class
(:func:`error_for_status`); the message written by the Swift engine is kept as it is, and the
Python layer prefixes what it knows (the argument's name, the shape it expected).

Choices worth knowing:

- :class:`UnknownLayerError` is both a ``ValueError`` (an invalid argument) and a ``KeyError``
  (a failed look-up by name, like ``dict[name]``). Its ``str()`` is the plain message, not the
  quoted form ``KeyError`` would give.
- :class:`ModelClosedError` is a ``ValueError``, as an operation on a closed file is.
- :class:`ModelFileNotFoundError` is a ``FileNotFoundError`` with ``errno`` and ``filename``
  set, raised by :func:`swiftcam.load` for a path that does not exist.
"""

import errno as _errno
import os as _os

__all__ = [
    "SwiftCAMError",
    "InvalidInputError",
    "InputShapeError",
    "BufferSizeError",
    "WeightsError",
    "UnsupportedModelError",
    "FileFormatError",
    "SwiftCAMIOError",
    "ModelFileNotFoundError",
    "UnknownLayerError",
    "OutOfMemoryError",
    "ModelClosedError",
    "error_for_status",
    "STATUS_OK",
    "STATUS_INVALID_ARGUMENT",
    "STATUS_IO_ERROR",
    "STATUS_INVALID_FILE",
    "STATUS_WEIGHT_ERROR",
    "STATUS_UNSUPPORTED_MODEL",
    "STATUS_INPUT_SHAPE",
    "STATUS_OUT_OF_MEMORY",
    "STATUS_UNKNOWN_LAYER",
    "STATUS_BUFFER_SIZE",
]

# Status codes of the C ABI (swiftcam.h); append-only there, so stable here.
STATUS_OK = 0
STATUS_INVALID_ARGUMENT = 1
STATUS_IO_ERROR = 2
STATUS_INVALID_FILE = 3
STATUS_WEIGHT_ERROR = 4
STATUS_UNSUPPORTED_MODEL = 5
STATUS_INPUT_SHAPE = 6
STATUS_OUT_OF_MEMORY = 7
STATUS_UNKNOWN_LAYER = 8
STATUS_BUFFER_SIZE = 9


class SwiftCAMError(Exception):
    """Base class of every error raised by swiftcam.

    Attributes
    ----------
    status : int or None
        The ``swiftcam_status`` code reported by the engine, or None when the error was
        detected in Python before calling it.
    """

    status = None

    def __str__(self):
        # A plain message even when a builtin base (KeyError) would quote it.
        if len(self.args) == 1:
            return str(self.args[0])
        return super().__str__()


class InvalidInputError(SwiftCAMError, ValueError):
    """An argument is invalid: wrong dtype, rank, shape, option or class index."""

    status = STATUS_INVALID_ARGUMENT


class InputShapeError(InvalidInputError):
    """The input tensor does not fit the network (channels, size, empty batch)."""

    status = STATUS_INPUT_SHAPE


class BufferSizeError(InvalidInputError):
    """An output buffer has the wrong element count (a bug in the caller of the C ABI)."""

    status = STATUS_BUFFER_SIZE


class WeightsError(SwiftCAMError, ValueError):
    """A weight tensor is missing, unexpected or has the wrong shape."""

    status = STATUS_WEIGHT_ERROR


class UnsupportedModelError(SwiftCAMError, ValueError):
    """The weights do not describe a network swiftcam supports."""

    status = STATUS_UNSUPPORTED_MODEL


class FileFormatError(SwiftCAMError, ValueError):
    """A file is not well-formed safetensors (truncated, corrupt header, bad offsets)."""

    status = STATUS_INVALID_FILE


class SwiftCAMIOError(SwiftCAMError, OSError):
    """A file cannot be opened, read or memory-mapped."""

    status = STATUS_IO_ERROR


class ModelFileNotFoundError(SwiftCAMIOError, FileNotFoundError):
    """The weights file does not exist."""

    @classmethod
    def for_path(cls, path):
        """Build the error for ``path`` with ``errno`` and ``filename`` set."""
        return cls(_errno.ENOENT, _os.strerror(_errno.ENOENT), path)


class UnknownLayerError(SwiftCAMError, ValueError, KeyError):
    """A layer name or index does not exist in the model."""

    status = STATUS_UNKNOWN_LAYER


class OutOfMemoryError(SwiftCAMError, MemoryError):
    """The engine could not allocate a buffer."""

    status = STATUS_OUT_OF_MEMORY


class ModelClosedError(SwiftCAMError, ValueError):
    """The model (or CAM object) was closed and cannot be used any more."""


_CLASS_FOR_STATUS = {
    STATUS_INVALID_ARGUMENT: InvalidInputError,
    STATUS_IO_ERROR: SwiftCAMIOError,
    STATUS_INVALID_FILE: FileFormatError,
    STATUS_WEIGHT_ERROR: WeightsError,
    STATUS_UNSUPPORTED_MODEL: UnsupportedModelError,
    STATUS_INPUT_SHAPE: InputShapeError,
    STATUS_OUT_OF_MEMORY: OutOfMemoryError,
    STATUS_UNKNOWN_LAYER: UnknownLayerError,
    STATUS_BUFFER_SIZE: BufferSizeError,
}


def error_for_status(status, message):
    """Return (not raise) the exception for an engine status code and its message.

    Parameters
    ----------
    status : int
        A ``swiftcam_status`` other than ``STATUS_OK``.
    message : str
        The engine's message; an empty one is replaced by a generic text.

    Returns
    -------
    SwiftCAMError
        An instance of the class mapped to ``status`` (the base class for a code this version
        does not know), with its ``status`` attribute set.
    """
    cls = _CLASS_FOR_STATUS.get(status, SwiftCAMError)
    if not message:
        message = f"swiftcam engine error (status {status})"
    error = cls(message)
    error.status = status
    return error
