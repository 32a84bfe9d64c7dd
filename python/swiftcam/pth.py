"""Reading ``torch.save`` files (``.pth``, ``.pt``) without torch, and without running their pickle.

:func:`read_pth` returns the state dict of a file written by ``torch.save`` (torch >= 1.6, the
zip format) as ``{name: numpy.ndarray}``. torch is never imported.

The format
----------
A zip archive whose members all sit under one folder, ``<archive>/`` (the file's stem in
torch 2.x):

- ``<archive>/data.pkl``: a pickle (protocol 2) of the saved object. Tensors are pickled as
  calls of ``torch._utils._rebuild_tensor_v2(storage, storage_offset, size, stride,
  requires_grad, backward_hooks[, metadata])``; ``storage`` is a *persistent id*
  ``("storage", torch.FloatStorage, "<key>", "cpu", numel)`` naming a zip member.
- ``<archive>/data/<key>``: the raw bytes of each storage, in the byte order of
  ``<archive>/byteorder`` (``little`` when absent). torch writes every record uncompressed
  (STORED) and pads its local header (an extra field) so the data starts at a multiple of 64
  bytes; torch 2.x also records the alignment in ``<archive>/.storage_alignment``.
- ``<archive>/version``, ``.format_version``, ``.data/serialization_id``: not needed here.

Security
--------
A pickle can call any importable function while it loads, so ``pickle.load`` on an untrusted
file is arbitrary code execution. :class:`_RestrictedUnpickler` never imports anything:
``find_class`` answers from a fixed table of stand-ins and raises :class:`UnsafePickleError`
for every other global, naming it. The stand-ins are: a dict subclass for
``collections.OrderedDict`` (whose BUILD state is ignored), validating functions of this module
for torch's rebuild functions (``torch._utils._rebuild_tensor``, ``_v2``, ``_v3``,
``_rebuild_parameter``, ``_rebuild_parameter_with_state``,
``torch._tensor._rebuild_from_type_v2``), non-callable markers for the storage classes, dtypes,
``torch.Tensor`` and ``torch.nn.Parameter``, and, because protocol 2 has no opcode for bytes,
``_codecs.encode`` restricted to latin1 text and ``bytes()`` without argument. The stand-ins
refuse pickle's BUILD (no attribute can be set on them) and build inert records
(:class:`_TensorRef`, :class:`_StorageRef`); arrays are made afterwards, from the records of the
selected state dict only, after every index has been checked against the storage's size.
``persistent_load`` accepts only torch's storage ids and checks that the storage exists in the
archive with exactly the size announced. Nothing from the file is executed, and torch is not
needed (nor imported if installed).

Memory
------
Storages stored uncompressed are memory-mapped: the arrays of contiguous tensors are read-only
views of one ``mmap`` of the file (``np.frombuffer`` at the member's data offset), so reading a
ResNet-50 state dict costs a few milliseconds and no copy (measured: 5-10 ms for 320 tensors,
102 MB, file in the page cache). Compressed members are inflated into memory. Copies are made
of views that would be misaligned for their dtype (archives repacked by other zip tools lose
torch's 64-byte padding), non-contiguous tensors (transposed or strided views: ``as_strided``
then a copy), ``bfloat16`` tensors (widened to float32: NumPy has no bfloat16), ``bool``
tensors, tensors with torch's negative bit, and big-endian files. Every returned array is
read-only; ``.copy()`` one to modify it. Do not truncate or rewrite the file while arrays from
it are alive (a mapped page that disappears is a SIGBUS); ``mmap=False`` reads every storage
into memory instead. The CRC of mapped storages is not checked (as with torch's mmap=True);
sizes and offsets are.
"""

import errno
import io
import mmap as _mmap
import os
import pickle
import pickletools
import re
import struct
import zipfile
from collections import OrderedDict
from collections.abc import Mapping

import numpy as np

from .errors import FileFormatError, ModelFileNotFoundError, SwiftCAMError, SwiftCAMIOError

__all__ = ["read_pth", "is_torch_file", "strip_wrapper_prefixes", "UnsafePickleError",
           "STATE_DICT_KEYS"]

#: Keys of a checkpoint dict that hold the model's state dict, in order of preference.
STATE_DICT_KEYS = ("state_dict", "model_state_dict", "model")

#: Key prefixes added by wrappers (DataParallel / DistributedDataParallel, torch.compile).
WRAPPER_PREFIXES = ("module.", "_orig_mod.")

_ZIP_MAGIC = b"PK\x03\x04"
# Pre-1.6 torch.save: a protocol-2 pickle of this magic number first.
_LEGACY_MAGIC = b"\x80\x02\x8a\x0a" + (0x1950A86A20F9469CFC6C).to_bytes(10, "little")
_MAX_PICKLE_BYTES = 256 * 1024 * 1024
_MAX_NDIM = 64
_MAX_COPY_ELEMENTS = 1 << 31  # a non-contiguous view copied into a new array
_STORAGE_KEY = re.compile(r"[A-Za-z0-9_.\-]{1,128}")
_LOCAL_HEADER = struct.Struct("<4s5H3L2H")  # 30 bytes


class UnsafePickleError(FileFormatError):
    """The pickle in a torch file asks for a global that swiftcam does not allow.

    Only what rebuilds tensors and plain containers is allowed; the rejected global is named
    in the message. Nothing from the file was executed.
    """


class _BadContent(Exception):
    """Raised inside the unpickler by the stand-ins; re-raised as FileFormatError with the path."""


# -- inert stand-ins --------------------------------------------------------------------------

class _Inert:
    """Base of the stand-ins: no instance dict, and pickle's BUILD opcode is refused."""

    __slots__ = ()

    def __setstate__(self, state):
        raise _BadContent(f"the pickle tries to set the state of {self!r}; torch files never do")

    def __reduce__(self):  # never pickled again
        raise TypeError(f"{type(self).__name__} cannot be pickled")


class _DType(_Inert):
    """A tensor element type: torch's name, the little-endian NumPy dtype that holds its bytes."""

    __slots__ = ("name", "numpy", "supported")

    def __init__(self, name, numpy, supported=True):
        self.name = name
        self.numpy = np.dtype(numpy) if numpy is not None else None
        self.supported = supported

    @property
    def itemsize(self):
        return self.numpy.itemsize

    def __repr__(self):
        return f"torch.{self.name}"


_DTYPES = {
    "float32": _DType("float32", "<f4"),
    "float16": _DType("float16", "<f2"),
    "bfloat16": _DType("bfloat16", "<u2"),  # widened to float32 when read
    "float64": _DType("float64", "<f8"),
    "int64": _DType("int64", "<i8"),
    "int32": _DType("int32", "<i4"),
    "int16": _DType("int16", "<i2"),
    "int8": _DType("int8", "i1"),
    "uint8": _DType("uint8", "u1"),
    "bool": _DType("bool", "u1"),  # bytes 0/1, turned into np.bool_ when read
    "uint16": _DType("uint16", "<u2"),
    "uint32": _DType("uint32", "<u4"),
    "uint64": _DType("uint64", "<u8"),
}
for _name in ("complex32", "complex64", "complex128", "qint8", "quint8", "qint32", "quint4x2",
              "quint2x4", "float8_e4m3fn", "float8_e5m2", "float8_e4m3fnuz", "float8_e5m2fnuz",
              "float8_e8m0fnu", "float4_e2m1fn_x2"):
    _DTYPES[_name] = _DType(_name, None, supported=False)
# torch.float etc. pickle under their canonical names; the aliases cost nothing.
for _alias, _name in (("float", "float32"), ("half", "float16"), ("double", "float64"),
                      ("long", "int64"), ("int", "int32"), ("short", "int16")):
    _DTYPES[_alias] = _DTYPES[_name]


class _StorageType(_Inert):
    """Stands in for torch.FloatStorage & co. and torch.UntypedStorage (not callable)."""

    __slots__ = ("name", "dtype")

    def __init__(self, name, dtype):
        self.name = name
        self.dtype = dtype  # None for UntypedStorage: bytes, typed by _rebuild_tensor_v3

    def __repr__(self):
        return f"torch.{self.name}"


_STORAGE_TYPES = {
    f"{prefix}Storage": _StorageType(f"{prefix}Storage", _DTYPES[dtype])
    for prefix, dtype in (("Float", "float32"), ("Half", "float16"), ("BFloat16", "bfloat16"),
                          ("Double", "float64"), ("Long", "int64"), ("Int", "int32"),
                          ("Short", "int16"), ("Char", "int8"), ("Byte", "uint8"),
                          ("Bool", "bool"), ("ComplexFloat", "complex64"),
                          ("ComplexDouble", "complex128"), ("QInt8", "qint8"),
                          ("QUInt8", "quint8"), ("QInt32", "qint32"),
                          ("QUInt4x2", "quint4x2"), ("QUInt2x4", "quint2x4"))
}
_UNTYPED_STORAGE = _StorageType("UntypedStorage", None)


class _TypeMarker(_Inert):
    """Stands in for torch.Tensor / torch.nn.Parameter when passed as data (not callable)."""

    __slots__ = ("name",)

    def __init__(self, name):
        self.name = name

    def __repr__(self):
        return self.name


_TENSOR_TYPE = _TypeMarker("torch.Tensor")
_PARAMETER_TYPE = _TypeMarker("torch.nn.Parameter")


class _StorageRef(_Inert):
    """A storage of the archive: its zip member, element type and element count."""

    __slots__ = ("key", "member", "dtype", "numel", "nbytes")

    def __init__(self, key, member, dtype, numel, nbytes):
        self.key, self.member, self.dtype = key, member, dtype
        self.numel, self.nbytes = numel, nbytes

    def __repr__(self):
        return f"<storage {self.key!r}>"


class _TensorRef(_Inert):
    """A checked view (offset, size, stride, in elements of ``dtype``) into a storage."""

    __slots__ = ("storage", "dtype", "offset", "size", "stride", "negative")

    def __init__(self, storage, dtype, offset, size, stride, negative):
        self.storage, self.dtype, self.offset = storage, dtype, offset
        self.size, self.stride, self.negative = size, stride, negative

    @property
    def numel(self):
        count = 1
        for dim in self.size:
            count *= dim
        return count

    def is_contiguous(self):
        expected = 1
        for dim, step in zip(reversed(self.size), reversed(self.stride)):
            if dim == 0:
                return True
            if dim != 1 and step != expected:
                return False
            expected *= dim
        return True

    def __repr__(self):
        return f"<tensor {self.dtype!r} {self.size}>"


class _StateDict(OrderedDict):
    """collections.OrderedDict as unpickled: the ``_metadata`` torch attaches is dropped."""

    def __setstate__(self, state):
        # state_dict() objects carry a `_metadata` attribute (module versions); not needed.
        pass

    def __reduce__(self):
        return (OrderedDict, (list(self.items()),))


# -- the allowed callables --------------------------------------------------------------------

def _check_int(value, what, minimum=0):
    if isinstance(value, bool) or not isinstance(value, int):
        raise _BadContent(f"{what} must be an int, got {type(value).__name__}")
    if value < minimum or value >= 1 << 62:
        raise _BadContent(f"{what} = {value} is out of range")
    return value


def _check_shape(value, what):
    if not isinstance(value, tuple):
        raise _BadContent(f"{what} must be a tuple of ints, got {type(value).__name__}")
    if len(value) > _MAX_NDIM:
        raise _BadContent(f"{what} has {len(value)} dimensions (at most {_MAX_NDIM} allowed)")
    return tuple(_check_int(v, what) for v in value)


def _make_tensor(storage, offset, size, stride, requires_grad, backward_hooks, dtype, metadata):
    if not isinstance(storage, _StorageRef):
        raise _BadContent(f"a tensor's storage must be a persistent storage id, got "
                          f"{type(storage).__name__}")
    offset = _check_int(offset, "storage_offset")
    size = _check_shape(size, "size")
    stride = _check_shape(stride, "stride")
    if len(size) != len(stride):
        raise _BadContent(f"size {size} and stride {stride} differ in length")
    if not isinstance(requires_grad, bool):
        raise _BadContent(f"requires_grad must be a bool, got {type(requires_grad).__name__}")
    if backward_hooks is not None and not isinstance(backward_hooks, dict):
        raise _BadContent(f"backward_hooks must be a dict, got {type(backward_hooks).__name__}")
    negative = False
    if metadata is not None:
        if not isinstance(metadata, dict):
            raise _BadContent(f"tensor metadata must be a dict, got {type(metadata).__name__}")
        for key, value in metadata.items():
            if key not in ("neg", "conj") or not isinstance(value, bool):
                raise _BadContent(f"unknown tensor metadata {key!r}: {value!r}")
        negative = metadata.get("neg", False)
    if dtype is None:
        dtype = storage.dtype
        if dtype is None:
            raise _BadContent("a tensor on an untyped storage needs _rebuild_tensor_v3's dtype")
    elif not isinstance(dtype, _DType):
        raise _BadContent(f"dtype must be a torch dtype, got {type(dtype).__name__}")
    if not dtype.supported:
        raise _BadContent(f"tensors of dtype torch.{dtype.name} are not supported")
    if storage.nbytes % dtype.itemsize:
        raise _BadContent(f"storage {storage.key!r} of {storage.nbytes} bytes cannot hold "
                          f"{dtype!r} elements")
    elements = storage.nbytes // dtype.itemsize
    tensor = _TensorRef(storage, dtype, offset, size, stride, negative)
    if tensor.numel:
        last = offset + sum((dim - 1) * step for dim, step in zip(size, stride))
        if last >= elements:
            raise _BadContent(f"a tensor of size {size}, stride {stride} at offset {offset} "
                              f"reaches element {last} of storage {storage.key!r}, which has "
                              f"{elements}")
        if not tensor.is_contiguous() and tensor.numel > _MAX_COPY_ELEMENTS:
            raise _BadContent(f"a strided tensor of size {size} is too large to copy")
    return tensor


class _Rebuilder(_Inert):
    """A callable stand-in for one of torch's rebuild functions; checks its arguments."""

    __slots__ = ("name", "function", "minimum", "maximum")

    def __init__(self, name, function, minimum, maximum):
        self.name, self.function, self.minimum, self.maximum = name, function, minimum, maximum

    def __call__(self, *args):
        if not self.minimum <= len(args) <= self.maximum:
            raise _BadContent(f"{self.name} called with {len(args)} arguments")
        return self.function(*args)

    def __repr__(self):
        return self.name


def _rebuild_tensor(storage, offset, size, stride):
    return _make_tensor(storage, offset, size, stride, False, None, None, None)


def _rebuild_tensor_v2(storage, offset, size, stride, requires_grad, hooks, metadata=None):
    return _make_tensor(storage, offset, size, stride, requires_grad, hooks, None, metadata)


def _rebuild_tensor_v3(storage, offset, size, stride, requires_grad, hooks, dtype,
                       metadata=None):
    if not isinstance(dtype, _DType):
        raise _BadContent(f"_rebuild_tensor_v3: dtype must be a torch dtype, got "
                          f"{type(dtype).__name__}")
    return _make_tensor(storage, offset, size, stride, requires_grad, hooks, dtype, metadata)


def _check_parameter(data, requires_grad, hooks):
    if not isinstance(data, _TensorRef):
        raise _BadContent(f"a Parameter must wrap a tensor, got {type(data).__name__}")
    if not isinstance(requires_grad, bool):
        raise _BadContent("a Parameter's requires_grad must be a bool")
    if hooks is not None and not isinstance(hooks, dict):
        raise _BadContent("a Parameter's backward_hooks must be a dict")
    return data


def _rebuild_parameter(data, requires_grad, hooks):
    return _check_parameter(data, requires_grad, hooks)


def _rebuild_parameter_with_state(data, requires_grad, hooks, state):
    # `state` holds Python attributes set on the Parameter; plain data only, and ignored.
    return _check_parameter(data, requires_grad, hooks)


def _rebuild_from_type_v2(function, new_type, args, state):
    # Tensors with Python attributes: function(*args) rebuilds the tensor, state is ignored.
    if not (isinstance(function, _Rebuilder) and function.name in _TENSOR_REBUILDERS):
        raise _BadContent(f"_rebuild_from_type_v2 may only rebuild tensors, got {function!r}")
    if new_type is not _TENSOR_TYPE and new_type is not _PARAMETER_TYPE:
        raise _BadContent(f"_rebuild_from_type_v2: unsupported tensor type {new_type!r}")
    if not isinstance(args, tuple):
        raise _BadContent("_rebuild_from_type_v2: the arguments must be a tuple")
    return function(*args)


def _codecs_encode(text, encoding):
    # How protocol 2 pickles bytes: _codecs.encode(bytes.decode("latin1"), "latin1").
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise _BadContent("_codecs.encode is only allowed to rebuild bytes (latin1)")
    return text.encode("latin1")


def _empty_bytes():
    # How protocol 2 pickles b"": bytes().
    return b""


_TENSOR_REBUILDERS = ("torch._utils._rebuild_tensor", "torch._utils._rebuild_tensor_v2",
                      "torch._utils._rebuild_tensor_v3", "torch._utils._rebuild_parameter",
                      "torch._utils._rebuild_parameter_with_state")

_GLOBALS = {
    ("collections", "OrderedDict"): _StateDict,
    ("torch._utils", "_rebuild_tensor"): _Rebuilder(
        "torch._utils._rebuild_tensor", _rebuild_tensor, 4, 4),
    ("torch._utils", "_rebuild_tensor_v2"): _Rebuilder(
        "torch._utils._rebuild_tensor_v2", _rebuild_tensor_v2, 6, 7),
    ("torch._utils", "_rebuild_tensor_v3"): _Rebuilder(
        "torch._utils._rebuild_tensor_v3", _rebuild_tensor_v3, 7, 8),
    ("torch._utils", "_rebuild_parameter"): _Rebuilder(
        "torch._utils._rebuild_parameter", _rebuild_parameter, 3, 3),
    ("torch._utils", "_rebuild_parameter_with_state"): _Rebuilder(
        "torch._utils._rebuild_parameter_with_state", _rebuild_parameter_with_state, 4, 4),
    ("torch._tensor", "_rebuild_from_type_v2"): _Rebuilder(
        "torch._tensor._rebuild_from_type_v2", _rebuild_from_type_v2, 4, 4),
    # bytes values (protocol 2 has no bytes opcode); nothing else from builtins or _codecs.
    ("_codecs", "encode"): _Rebuilder("_codecs.encode", _codecs_encode, 2, 2),
    ("__builtin__", "bytes"): _Rebuilder("builtins.bytes", _empty_bytes, 0, 0),
    ("builtins", "bytes"): _Rebuilder("builtins.bytes", _empty_bytes, 0, 0),
    ("torch", "Tensor"): _TENSOR_TYPE,
    ("torch._tensor", "Tensor"): _TENSOR_TYPE,
    ("torch.nn.parameter", "Parameter"): _PARAMETER_TYPE,
    ("torch", "UntypedStorage"): _UNTYPED_STORAGE,
    ("torch.storage", "UntypedStorage"): _UNTYPED_STORAGE,
}
_GLOBALS.update({("torch", name): storage for name, storage in _STORAGE_TYPES.items()})
_GLOBALS.update({("torch", name): dtype for name, dtype in _DTYPES.items()})


def _refusal(path, module, name):
    qualified = f"{module}.{name}"
    hint = ("If only the weights are needed, re-save them with torch (on a trusted machine): "
            "torch.save(checkpoint['state_dict'], path), or pass the state dict to "
            "swiftcam.load directly.")
    if module.startswith(("torch.nn", "torchvision", "timm")):
        hint = ("The file seems to hold a whole pickled model (torch.save(model)); save its "
                "weights instead: torch.save(model.state_dict(), path).")
    return (f"{path}: refusing to load {qualified!r} from the pickle: only tensors and plain "
            f"containers are allowed; nothing from the file was executed. {hint}")


class _RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that imports nothing: globals come from :data:`_GLOBALS` or are refused."""

    def __init__(self, file, path, storage_for):
        super().__init__(file)
        self._path = path
        self._storage_for = storage_for

    def find_class(self, module, name):
        found = _GLOBALS.get((module, name))
        if found is None:
            raise UnsafePickleError(_refusal(self._path, module, name))
        return found

    def persistent_load(self, pid):
        return self._storage_for(pid)


# -- the archive ------------------------------------------------------------------------------

def is_torch_file(path):
    """True when ``path`` looks like a torch.save file: a zip archive with an
    ``<archive>/data.pkl`` member (only the zip's directory is read), or the legacy pre-1.6
    format (its first bytes). Never raises; a .safetensors or .npz file gives False.
    """
    try:
        with open(path, "rb") as file:
            head = file.read(len(_LEGACY_MAGIC))
            if head.startswith(_LEGACY_MAGIC):
                return True
            if not head.startswith(_ZIP_MAGIC):
                return False
            file.seek(0)
            with zipfile.ZipFile(file) as archive:
                return any(name.count("/") == 1 and name.endswith("/data.pkl")
                           for name in archive.namelist())
    except Exception:  # unreadable, damaged zip, ...
        return False


def strip_wrapper_prefixes(keys_to_values):
    """Strip ``module.`` (DataParallel, DistributedDataParallel) and ``_orig_mod.``
    (torch.compile) from the keys, when every key has the prefix. Returns a new dict."""
    result = dict(keys_to_values)
    changed = True
    while result and changed:
        changed = False
        for prefix in WRAPPER_PREFIXES:
            if all(isinstance(k, str) and k.startswith(prefix) for k in result):
                result = {k[len(prefix):]: v for k, v in result.items()}
                changed = True
    return result


class _Archive:
    """An open torch zip archive: its members and the storages' bytes."""

    def __init__(self, path, file, use_mmap):
        self.path = path
        self.file = file
        self.size = os.fstat(file.fileno()).st_size
        self.use_mmap = use_mmap
        self._map = None
        try:
            self.zip = zipfile.ZipFile(file)
        except OSError as error:
            if _is_real_io_error(error):
                raise
            raise FileFormatError(f"{path}: not a valid torch.save file: the zip archive is "
                                  f"damaged ({error})") from None
        except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, EOFError,
                NotImplementedError) as error:
            raise FileFormatError(f"{path}: not a valid torch.save file: the zip archive is "
                                  f"damaged or truncated ({error})") from None
        self.infos = {info.filename: info for info in self.zip.infolist()}
        if not self.infos:
            raise FileFormatError(f"{path}: not a torch.save file: the zip archive is empty")
        # torch names the records after the first member's folder.
        first = self.zip.infolist()[0].filename
        self.prefix = first.split("/", 1)[0] if "/" in first else ""
        if f"{self.prefix}/data.pkl" not in self.infos:
            candidates = [n for n in self.infos if n.count("/") == 1 and n.endswith("/data.pkl")]
            if len(candidates) != 1:
                raise FileFormatError(f"{path}: not a torch.save file: the zip archive has no "
                                      "<archive>/data.pkl (is it a NumPy .npz or another zip?)")
            self.prefix = candidates[0].split("/", 1)[0]
        if (f"{self.prefix}/constants.pkl" in self.infos
                or any(n.startswith(f"{self.prefix}/code/") for n in self.infos)):
            raise FileFormatError(
                f"{path}: a TorchScript archive (torch.jit.save) is not supported; save the "
                "weights with torch.save(model.state_dict(), path) and load that file")
        self.byteorder = "little"
        byteorder_name = f"{self.prefix}/byteorder"
        if byteorder_name in self.infos:
            value = self.read_member(byteorder_name, limit=16).decode("ascii", "replace")
            if value not in ("little", "big"):
                raise FileFormatError(f"{path}: unknown byte order {value!r} in {byteorder_name}")
            self.byteorder = value
        self.storages = {}

    def read_member(self, name, limit):
        info = self.infos[name]
        if info.file_size > limit:
            raise FileFormatError(f"{self.path}: {name} is {info.file_size} bytes, more than "
                                  f"the {limit} allowed")
        if info.flag_bits & 0x1:
            raise FileFormatError(f"{self.path}: {name} is encrypted")
        try:
            return self.zip.read(info)
        except (zipfile.BadZipFile, EOFError, NotImplementedError, RuntimeError,
                ValueError) as error:
            raise FileFormatError(f"{self.path}: cannot read {name} from the archive: {error}") \
                from None
        except Exception as error:  # zlib.error, bz2's OSError("Invalid data stream"), ...
            if isinstance(error, MemoryError) or _is_real_io_error(error):
                raise
            raise FileFormatError(f"{self.path}: cannot read {name} from the archive: {error}") \
                from None

    # -- storages -----------------------------------------------------------------------------

    def storage_for(self, pid):
        """persistent_load: ("storage", storage type, key, location, numel) -> _StorageRef."""
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage"):
            raise _BadContent(f"unsupported persistent id {_short(pid)}: only torch storages "
                              "are allowed")
        _, storage_type, key, location, numel = pid
        if not isinstance(storage_type, _StorageType):
            raise _BadContent(f"persistent id names {_short(storage_type)} as a storage type")
        if not isinstance(key, str) or not _STORAGE_KEY.fullmatch(key):
            raise _BadContent(f"invalid storage key {_short(key)}")
        if not isinstance(location, str):
            raise _BadContent(f"invalid storage location {_short(location)}")
        numel = _check_int(numel, f"the element count of storage {key!r}")
        dtype = storage_type.dtype
        if dtype is not None and not dtype.supported:
            raise _BadContent(f"storage {key!r} holds torch.{dtype.name} data, which is not "
                              "supported")
        nbytes = numel * (dtype.itemsize if dtype is not None else 1)
        known = self.storages.get(key)
        if known is not None:
            if known.dtype is not dtype or known.nbytes != nbytes:
                raise _BadContent(f"storage {key!r} is referenced with two different types")
            return known
        member = f"{self.prefix}/data/{key}"
        info = self.infos.get(member)
        if info is None:
            raise _BadContent(f"storage {key!r} is referenced by the pickle but {member} is "
                              "missing from the archive")
        if info.file_size != nbytes:
            raise _BadContent(f"storage {key!r} should hold {nbytes} bytes ({numel} elements) "
                              f"but {member} has {info.file_size}")
        storage = _StorageRef(key, member, dtype, numel, nbytes)
        self.storages[key] = storage
        return storage

    def _data_offset(self, info):
        """Offset in the file of a STORED member's data, from its local header."""
        self.file.seek(info.header_offset)
        header = self.file.read(_LOCAL_HEADER.size)
        if len(header) != _LOCAL_HEADER.size:
            raise FileFormatError(f"{self.path}: the local header of {info.filename} is "
                                  "truncated")
        fields = _LOCAL_HEADER.unpack(header)
        if fields[0] != _ZIP_MAGIC:
            raise FileFormatError(f"{self.path}: bad local header for {info.filename}")
        name_length, extra_length = fields[-2], fields[-1]
        name = self.file.read(name_length)
        if name.decode("utf-8", "replace") != info.filename:
            raise FileFormatError(f"{self.path}: the local header of {info.filename} names "
                                  f"{name!r}")
        offset = info.header_offset + _LOCAL_HEADER.size + name_length + extra_length
        if offset + info.file_size > self.size:
            raise FileFormatError(f"{self.path}: {info.filename} runs past the end of the file "
                                  "(truncated?)")
        return offset

    def storage_bytes(self, storage):
        """The storage's bytes as a read-only uint8 array (a view of the mapped file when the
        member is STORED and mmap is on)."""
        info = self.infos[storage.member]
        mappable = (self.use_mmap and info.compress_type == zipfile.ZIP_STORED
                    and not info.flag_bits & 0x1 and info.file_size == storage.nbytes)
        if mappable:
            offset = self._data_offset(info)
            if storage.nbytes == 0:
                return np.empty(0, dtype=np.uint8)
            if self._map is None:
                self._map = _mmap.mmap(self.file.fileno(), 0, access=_mmap.ACCESS_READ)
            return np.frombuffer(self._map, dtype=np.uint8, count=storage.nbytes,
                                 offset=offset)
        data = self.read_member(storage.member, limit=storage.nbytes)
        if len(data) != storage.nbytes:
            raise FileFormatError(f"{self.path}: {storage.member} has {len(data)} bytes, "
                                  f"expected {storage.nbytes}")
        return np.frombuffer(data, dtype=np.uint8)


def _describe(value):
    """'a tensor', 'a dict', 'an int', ... for messages."""
    if isinstance(value, _TensorRef):
        return "a tensor"
    if isinstance(value, dict):
        return "a dict"
    name = type(value).__name__
    return f"{'an' if name[:1] in 'aeiou' else 'a'} {name}"


def _short(value):
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


# -- materializing ----------------------------------------------------------------------------

def _materialize(tensor, raw, byteorder):
    """The ndarray of a checked tensor view over its storage's bytes ``raw``."""
    dtype = tensor.dtype
    stored = dtype.numpy.newbyteorder("<" if byteorder == "little" else ">")
    itemsize = dtype.itemsize
    count = tensor.numel
    if count == 0:
        array = np.empty(tensor.size, dtype=stored)
    elif tensor.is_contiguous():
        start = tensor.offset * itemsize
        array = raw[start:start + count * itemsize].view(stored).reshape(tensor.size)
    else:
        span = 1 + sum((dim - 1) * step for dim, step in zip(tensor.size, tensor.stride))
        start = tensor.offset * itemsize
        base = raw[start:start + span * itemsize].view(stored)
        strides = tuple(step * itemsize for step in tensor.stride)
        array = np.lib.stride_tricks.as_strided(base, shape=tensor.size, strides=strides,
                                                writeable=False).copy()
    if dtype.name == "bfloat16":
        array = (array.astype(np.uint32) << 16).view(np.float32)
    elif dtype.name == "bool":
        array = array != 0
    elif byteorder == "big" and itemsize > 1:
        array = array.astype(dtype.numpy.newbyteorder("="))
    if tensor.negative:
        array = np.negative(array)
    if not array.flags.aligned:
        array = array.copy()
    if array.flags.writeable:
        array.flags.writeable = False
    return array


def _select_state_dict(root, key, path):
    def has_tensors(value):
        return isinstance(value, Mapping) and any(isinstance(v, _TensorRef)
                                                  for v in value.values())

    if not isinstance(root, Mapping):
        raise FileFormatError(f"{path}: the file holds {_describe(root)}, not a state dict "
                              "(a dict of tensor names to tensors)")
    if key is not None:
        if key not in root:
            raise FileFormatError(f"{path}: the checkpoint has no key {key!r}; its keys are "
                                  f"{_key_list(root)}")
        chosen = root[key]
        if not isinstance(chosen, Mapping):
            raise FileFormatError(f"{path}: checkpoint[{key!r}] is {_describe(chosen)}, not a "
                                  "state dict")
        return chosen, f"checkpoint[{key!r}]"
    if has_tensors(root):
        return root, "the state dict"
    for candidate in STATE_DICT_KEYS:
        if candidate in root and has_tensors(root[candidate]):
            return root[candidate], f"checkpoint[{candidate!r}]"
    raise FileFormatError(
        f"{path}: no state dict found: expected tensors at the top level or under one of "
        f"{', '.join(repr(k) for k in STATE_DICT_KEYS)}; the file's keys are "
        f"{_key_list(root)} (choose one with key=...)")


def _key_list(mapping):
    keys = [repr(k) for k in list(mapping)[:20]]
    more = len(mapping) - len(keys)
    return "[" + ", ".join(keys) + (f", ... ({more} more)" if more > 0 else "") + "]"


# -- the entry point --------------------------------------------------------------------------

def read_pth(path, *, key=None, mmap=True):
    """Read the state dict of a ``torch.save`` file without torch.

    Parameters
    ----------
    path : str or os.PathLike
        A file written by ``torch.save`` with torch >= 1.6 (the zip format).
    key : str, optional
        The entry of a checkpoint dict that holds the state dict. By default the file's
        top-level dict is used when it holds tensors, else the first of ``"state_dict"``,
        ``"model_state_dict"``, ``"model"`` that does.
    mmap : bool
        Memory-map uncompressed storages (the default) instead of reading them into memory.

    Returns
    -------
    dict of str to numpy.ndarray
        In the file's order, ``module.`` / ``_orig_mod.`` prefixes stripped when every key has
        them. Arrays keep their dtype (bfloat16 becomes float32) and are read-only.

    Raises
    ------
    ModelFileNotFoundError
        The file does not exist.
    UnsafePickleError
        The pickle references a global other than torch's tensor-rebuilding functions and plain
        containers (nothing is executed).
    FileFormatError
        Not a torch zip file (the legacy pre-1.6 format included), a damaged archive or pickle,
        a missing or short storage, an out-of-range tensor view, no state dict in the file.
    """
    path = os.fsdecode(os.fspath(path))
    try:
        file = open(path, "rb")
    except FileNotFoundError:
        raise ModelFileNotFoundError.for_path(path) from None
    except IsADirectoryError as error:
        raise SwiftCAMIOError(error.errno, "is a directory; expected a torch.save file",
                              path) from None
    except OSError as error:
        raise SwiftCAMIOError(error.errno, error.strerror, path) from None
    with file:
        head = file.read(512)
        file.seek(0)
        if not head.startswith(_ZIP_MAGIC):
            _reject_non_zip(path, head)
        archive = _Archive(path, file, mmap)
        root = _unpickle(archive)
        state, where = _select_state_dict(root, key, path)
        result = {}
        raws = {}
        for name, value in state.items():
            if not isinstance(name, str):
                raise FileFormatError(f"{path}: {where} has a key {_short(name)} that is not "
                                      "a str")
            if not isinstance(value, _TensorRef):
                raise FileFormatError(f"{path}: {where}[{name!r}] is {_describe(value)}, not a "
                                      "tensor")
            storage = value.storage
            raw = raws.get(storage.key)
            if raw is None:
                raw = raws[storage.key] = archive.storage_bytes(storage)
            result[name] = _materialize(value, raw, archive.byteorder)
    if not result:
        raise FileFormatError(f"{path}: {where} is empty")
    return strip_wrapper_prefixes(result)


def _check_memo_indices(data, path, name):
    """Refuse memo indices larger than the pickle itself before unpickling: the C unpickler sizes
    its memo table by the largest index, so 12 bytes could otherwise claim gigabytes. A pickle
    stores at most one memo entry per opcode, so a real index is always below len(data)."""
    try:
        for opcode, argument, _ in pickletools.genops(data):
            if "PUT" in opcode.name and isinstance(argument, int) and argument > len(data):
                raise FileFormatError(f"{path}: {name} is not a valid torch pickle: memo index "
                                      f"{argument} in a {len(data)}-byte pickle")
    except FileFormatError:
        raise
    except Exception as error:  # ValueError from genops on malformed or truncated opcodes
        raise FileFormatError(f"{path}: {name} is truncated or not a valid torch pickle "
                              f"({type(error).__name__}: {error})") from None


def _is_real_io_error(error):
    """True for an OSError from the disk (EIO, ...), False for one a damaged archive causes
    (a decompressor's "Invalid data stream", EINVAL from seeking to a negative offset)."""
    return isinstance(error, OSError) and error.errno not in (None, errno.EINVAL)


def _reject_non_zip(path, head):
    if head.startswith(_LEGACY_MAGIC) or head[257:262] == b"ustar":
        raise FileFormatError(
            f"{path}: a legacy torch.save file (the pre-1.6, non-zip format), which swiftcam "
            "does not read; re-save it with a recent torch: torch.save(torch.load(path, "
            "map_location='cpu', weights_only=True), path)")
    if not head:
        raise FileFormatError(f"{path}: not a torch.save file: the file is empty")
    raise FileFormatError(f"{path}: not a torch.save file: expected a zip archive (torch >= "
                          "1.6 format)")


def _unpickle(archive):
    path = archive.path
    name = f"{archive.prefix}/data.pkl"
    data = archive.read_member(name, limit=_MAX_PICKLE_BYTES)
    _check_memo_indices(data, path, name)
    unpickler = _RestrictedUnpickler(io.BytesIO(data), path, archive.storage_for)
    try:
        return unpickler.load()
    except SwiftCAMError:
        raise
    except _BadContent as error:
        raise FileFormatError(f"{path}: invalid tensor in {name}: {error}") from None
    except MemoryError:
        # The pickle is at most _MAX_PICKLE_BYTES; only hostile opcodes (a huge memo index, ...)
        # make the unpickler ask for that much memory.
        raise FileFormatError(f"{path}: {name} is not a valid torch pickle: it asks for an "
                              "absurd amount of memory") from None
    except Exception as error:  # UnpicklingError, EOFError, TypeError, ...
        raise FileFormatError(f"{path}: {name} is truncated or not a valid torch pickle "
                              f"({type(error).__name__}: {error})") from None
