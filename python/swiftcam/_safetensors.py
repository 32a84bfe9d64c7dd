"""A small pure-NumPy reader and writer for the safetensors format.

Layout: an 8-byte little-endian header length ``n``, ``n`` bytes of UTF-8 JSON mapping each
tensor name to ``{"dtype", "shape", "data_offsets": [begin, end]}`` (offsets relative to the
byte after the header) plus an optional ``"__metadata__"`` string map, then the data.

Used by the tests to read reference tensors and by :mod:`swiftcam` to write models; the engine
has its own reader in Swift. Every malformed file raises :class:`swiftcam.errors.FileFormatError`.
"""

import json
import os

import numpy as np

from .errors import FileFormatError

__all__ = ["read", "read_header", "write"]

_DTYPES = {
    "F64": np.dtype("<f8"),
    "F32": np.dtype("<f4"),
    "F16": np.dtype("<f2"),
    "BF16": np.dtype("<u2"),  # widened to float32 on read
    "I64": np.dtype("<i8"),
    "I32": np.dtype("<i4"),
    "I16": np.dtype("<i2"),
    "I8": np.dtype("i1"),
    "U64": np.dtype("<u8"),
    "U32": np.dtype("<u4"),
    "U16": np.dtype("<u2"),
    "U8": np.dtype("u1"),
    "BOOL": np.dtype("?"),
}
_NAMES = {
    np.dtype(dtype): name for name, dtype in _DTYPES.items() if name not in ("BF16",)
}
_MAX_HEADER = 100 * 1024 * 1024


def _fail(path, what):
    raise FileFormatError(f"{os.fspath(path)!s}: not a valid safetensors file: {what}")


def read_header(path):
    """Return ``(header, data_start, file_size)`` of a safetensors file.

    ``header`` maps every tensor name to its entry (``"__metadata__"`` included when present).
    """
    with open(path, "rb") as file:
        prefix = file.read(8)
        if len(prefix) < 8:
            _fail(path, f"the file has {len(prefix)} bytes, fewer than the 8-byte header length")
        length = int.from_bytes(prefix, "little")
        size = os.fstat(file.fileno()).st_size
        if length > min(size - 8, _MAX_HEADER):
            _fail(path, f"header length {length} exceeds the file ({size} bytes)")
        raw = file.read(length)
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as error:
        _fail(path, f"the header is not JSON ({error})")
    if not isinstance(header, dict):
        _fail(path, "the header is not a JSON object")
    return header, 8 + length, size


def _tensor_entry(path, name, entry, data_size):
    if not isinstance(entry, dict):
        _fail(path, f"entry {name!r} is not an object")
    dtype_name = entry.get("dtype")
    if dtype_name not in _DTYPES:
        _fail(path, f"tensor {name!r} has unsupported dtype {dtype_name!r}")
    shape = entry.get("shape")
    offsets = entry.get("data_offsets")
    if not isinstance(shape, list) or not all(isinstance(d, int) and d >= 0 for d in shape):
        _fail(path, f"tensor {name!r} has an invalid shape {shape!r}")
    if (not isinstance(offsets, list) or len(offsets) != 2
            or not all(isinstance(o, int) for o in offsets)
            or not 0 <= offsets[0] <= offsets[1] <= data_size):
        _fail(path, f"tensor {name!r} has invalid data offsets {offsets!r} "
                    f"(data section of {data_size} bytes)")
    dtype = _DTYPES[dtype_name]
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if offsets[1] - offsets[0] != expected:
        _fail(path, f"tensor {name!r} of shape {tuple(shape)} and dtype {dtype_name} needs "
                    f"{expected} bytes, its offsets span {offsets[1] - offsets[0]}")
    return dtype_name, tuple(shape), offsets


def read(path, *, metadata=False):
    """Read every tensor of a safetensors file into NumPy arrays.

    Parameters
    ----------
    path : str or os.PathLike
    metadata : bool
        Also return the ``"__metadata__"`` string map.

    Returns
    -------
    dict of str to numpy.ndarray, or (dict, dict) when ``metadata`` is true
        Arrays in file order, in their stored dtype (BF16 is widened to float32), writable
        and independent of the file.
    """
    header, start, size = read_header(path)
    meta = header.pop("__metadata__", None) or {}
    data_size = size - start
    entries = {name: _tensor_entry(path, name, entry, data_size)
               for name, entry in header.items()}
    with open(path, "rb") as file:
        file.seek(start)
        data = file.read()
    if len(data) != data_size:
        _fail(path, "the file changed while it was read")
    tensors = {}
    for name, (dtype_name, shape, (begin, end)) in entries.items():
        array = np.frombuffer(data, dtype=_DTYPES[dtype_name], count=(end - begin)
                              // _DTYPES[dtype_name].itemsize, offset=begin).reshape(shape)
        if dtype_name == "BF16":
            array = (array.astype(np.uint32) << 16).view(np.float32)
        tensors[name] = array.copy()
    return (tensors, dict(meta)) if metadata else tensors


def write(path, tensors, metadata=None):
    """Write a mapping of names to arrays as a safetensors file.

    Parameters
    ----------
    path : str or os.PathLike
    tensors : Mapping[str, array_like]
        Arrays of a dtype safetensors names (float64/32/16, signed and unsigned integers,
        bool); written little-endian and C-ordered, in the mapping's order.
    metadata : Mapping[str, str], optional
        Stored under ``"__metadata__"``.
    """
    header = {}
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    arrays = []
    offset = 0
    for name, value in tensors.items():
        array = np.asarray(value)
        dtype = array.dtype.newbyteorder("<") if array.dtype.byteorder == ">" else array.dtype
        if dtype not in _NAMES:
            raise TypeError(f"tensor {name!r}: dtype {array.dtype} cannot be stored in "
                            "safetensors")
        array = np.asarray(array, dtype=dtype, order="C")
        header[name] = {"dtype": _NAMES[dtype], "shape": list(array.shape),
                        "data_offsets": [offset, offset + array.nbytes]}
        offset += array.nbytes
        arrays.append(array)
    encoded = json.dumps(header, separators=(",", ":")).encode("utf-8")
    encoded += b" " * (-len(encoded) % 8)
    with open(path, "wb") as file:
        file.write(len(encoded).to_bytes(8, "little"))
        file.write(encoded)
        for array in arrays:
            file.write(array.tobytes())
