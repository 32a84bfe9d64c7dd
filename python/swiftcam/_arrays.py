"""Turning user inputs into the float32, C-contiguous arrays the engine reads.

A float32 C-contiguous ``numpy.ndarray`` passes through unchanged (read-only arrays included),
so the engine reads the caller's memory without a copy. Anything else is converted once with
``np.asarray(x, dtype=np.float32, order="C")`` (a misaligned array is copied too). Torch
tensors are detached and moved to the CPU first; their NumPy view shares memory when the tensor
is float32 and contiguous.
"""

import numpy as np

from .errors import InputShapeError, InvalidInputError, OutOfMemoryError

__all__ = ["to_numpy", "as_float32", "as_input_batch"]

# Kinds np.asarray may produce that make sense as numbers: bool, signed, unsigned, float.
_NUMERIC_KINDS = frozenset("biuf")


def to_numpy(value, name="x"):
    """Return ``value`` as an ndarray without copying when possible.

    Objects with ``.detach()`` (torch tensors) are detached and moved to the CPU; the result
    is whatever ``np.asarray`` gives. Raises InvalidInputError when NumPy cannot make an array
    (ragged nesting and the like).
    """
    if isinstance(value, np.ndarray):
        return value
    if hasattr(value, "detach") and callable(value.detach):
        value = value.detach()
        if hasattr(value, "cpu"):
            value = value.cpu()
        if hasattr(value, "numpy"):
            try:
                return value.numpy()
            except (TypeError, RuntimeError):
                pass  # e.g. bfloat16 tensors: fall through to np.asarray
    try:
        return np.asarray(value)
    except (TypeError, ValueError) as error:
        raise InvalidInputError(f"{name}: cannot be converted to a numeric array ({error})") \
            from error


def as_float32(value, name="x"):
    """Return ``value`` as a float32 C-contiguous ndarray, copying only when needed.

    Raises InvalidInputError for non-numeric dtypes (object, str, bytes, complex, datetime,
    timedelta, structured, void).
    """
    array = to_numpy(value, name)
    if array.dtype.kind not in _NUMERIC_KINDS:
        raise InvalidInputError(
            f"{name}: expected a real numeric array (float32 preferred), got dtype "
            f"{array.dtype!s}; complex, object, string and date types cannot be converted")
    try:
        array = np.asarray(array, dtype=np.float32, order="C")
        if not array.flags.aligned:
            array = array.copy()
    except MemoryError as error:
        raise OutOfMemoryError(
            f"{name}: cannot allocate {array.size * 4} bytes to convert an array of shape "
            f"{array.shape} and dtype {array.dtype} to float32 ({error})") from None
    return array


def _shape_text(shape):
    return "(" + ", ".join(str(d) for d in shape) + ")"


def as_input_batch(value, channels, name="input_tensor"):
    """Validate an image batch and return it as float32 (N, C, H, W), C-contiguous.

    Parameters
    ----------
    value : array_like
        The batch, shape (N, C, H, W).
    channels : int
        The channels the model expects.
    name : str
        The argument's name, for messages.
    """
    array = to_numpy(value, name)
    if array.dtype.kind not in _NUMERIC_KINDS:
        # Check before the rank so the message names the real problem.
        as_float32(array, name)
    expected = f"(N, {channels}, H, W)"
    if array.ndim == 3:
        raise InputShapeError(
            f"{name}: expected a batch of shape {expected}, got a single image of shape "
            f"{_shape_text(array.shape)}; add a batch axis with x[None] "
            "(or x.unsqueeze(0) for a torch tensor)")
    if array.ndim != 4:
        raise InputShapeError(
            f"{name}: expected shape {expected}, got {array.ndim} dimension(s) with shape "
            f"{_shape_text(array.shape)}")
    n, c, h, w = array.shape
    if c != channels:
        hint = ""
        if array.shape[3] == channels:
            hint = "; it looks channels-last (N, H, W, C): use x.transpose(0, 3, 1, 2)"
        raise InputShapeError(
            f"{name}: expected shape {expected}, got {_shape_text(array.shape)}: the model "
            f"takes {channels} channels{hint}")
    if n == 0:
        raise InputShapeError(f"{name}: the batch is empty: got shape {_shape_text(array.shape)}")
    if h == 0 or w == 0:
        raise InputShapeError(
            f"{name}: the image is too small: got shape {_shape_text(array.shape)}, "
            "height and width must be at least 1")
    return as_float32(array, name)
