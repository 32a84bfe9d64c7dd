#!/usr/bin/env python3
"""Fuzz the torch.save (.pth) reader, swiftcam.pth.read_pth, and loading what it returns.

    python3 tools/fuzz/fuzz_pth.py --runs 20000 --seed 1 --progress 30

Seeds: the torch.save files of python/tests/data/pth/ (written by torch; a tiny ResNet as a
plain state dict, a checkpoint dict, DataParallel prefixes, float16, bfloat16, views, several
dtypes, parameters). Mutations:

- zip structure: members dropped, renamed, duplicated, moved out of the archive folder,
  compressed (DEFLATED, BZIP2, LZMA), storages truncated or extended, ``byteorder`` changed,
  raw bytes of local headers and the central directory flipped, the file truncated;
- the pickle (data.pkl), opcode-aware: integers (sizes, strides, offsets, element counts)
  replaced by interesting values, GLOBALs replaced by dangerous ones (os.system, builtins.eval,
  getattr, subprocess.Popen, numpy's _reconstruct, torch.nn modules...), storage keys changed,
  opcodes deleted, duplicated, swapped, or inserted (REDUCE, BUILD, NEWOBJ, STACK_GLOBAL, INST,
  EXT1, big memo indices, PERSID, early STOP), blind byte flips.

Oracle for "never run untrusted code": an audit hook (sys.addaudithook) watches every input's
read_pth call; process creation, exec/compile, imports beyond the decompressors, file opens
other than the input itself, sockets, ctypes and the default pickle.find_class are refused (the
hook raises, so nothing runs) and reported as unexpected outcomes. Any exception that is not a
swiftcam.SwiftCAMError is unexpected too; crashes and hangs are recorded by harness.py.

When read_pth returns, the state dict goes through swiftcam.load and, if that loads, a forward
pass and a Grad-CAM (as in fuzz_safetensors.py). When swiftcam.load reads .pth files itself,
this target keeps working: it calls read_pth, which is what load() would use.
"""

import io
import os
import pickletools
import struct
import sys
import zipfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import harness  # noqa: E402

PTH_DATA = harness.REPO_ROOT / "python" / "tests" / "data" / "pth"
SEED_FILES = ("resnet_tiny", "checkpoint", "dataparallel", "float16", "bfloat16", "views",
              "dtypes", "parameters", "model_key")

GLOBALS = [
    ("os", "system"), ("posix", "system"), ("builtins", "eval"), ("__builtin__", "eval"),
    ("builtins", "exec"), ("builtins", "getattr"), ("builtins", "__import__"),
    ("builtins", "open"), ("subprocess", "Popen"), ("socket", "socket"), ("ctypes", "CDLL"),
    ("numpy.core.multiarray", "_reconstruct"), ("numpy", "ndarray"), ("copyreg", "_reconstructor"),
    ("torch.nn.modules.conv", "Conv2d"), ("torch.storage", "_load_from_bytes"),
    ("torch._utils", "_rebuild_tensor_v2"), ("torch._utils", "_rebuild_tensor"),
    ("torch._utils", "_rebuild_parameter"), ("torch._utils", "_rebuild_tensor_v3"),
    ("torch._tensor", "_rebuild_from_type_v2"), ("torch", "FloatStorage"),
    ("torch", "HalfStorage"), ("torch", "BFloat16Storage"), ("torch", "LongStorage"),
    ("torch", "BoolStorage"), ("torch", "ComplexFloatStorage"), ("torch", "UntypedStorage"),
    ("torch", "float32"), ("torch", "bfloat16"), ("torch", "complex64"),
    ("collections", "OrderedDict"), ("_codecs", "encode"), ("builtins", "bytes"),
    ("builtins", "set"), ("builtins", "slice"), ("torch", "Tensor"),
]
INTERESTING_INTS = [0, 1, 2, 3, 5, 7, 255, 256, 65535, 2**31 - 1, 2**31, 2**32, 2**62 - 1, 2**62,
                    2**63 - 1, 2**63, 2**64, 2**100, -1, -2, -(2**31), -(2**63)]
INSERTIONS = [b"R", b"b", b"\x81", b"\x92", b"\x93", b"o", b"0", b"2", b"(", b"s", b"u", b"e",
              b"t", b".", b"N", b")", b"]", b"}", b"\x85", b"\x86", b"\x87", b"Q",
              b"\x82\x01", b"\x83\x01\x00", b"\x84\x01\x00\x00\x00", b"j\xff\xff\xff\x7f",
              b"h\xff", b"r\xff\xff\xff\x7f", b"P0\n", b"\x8c\x02os\x8c\x06system\x93",
              b"cposix\nsystem\n", b"ibuiltins\neval\n", b"\x95" + struct.pack("<Q", 2**40),
              b"\x8e" + struct.pack("<Q", 2**40), b"\x97", b"\x98",
              b"\x96" + struct.pack("<Q", 0),
              b"(" * 1000, b"]" * 100000]


# -- pickle mutations -----------------------------------------------------------------------------


def _encode_int(value):
    if 0 <= value < 256:
        return b"K" + bytes([value])
    if 0 <= value < 65536:
        return b"M" + struct.pack("<H", value)
    if -(2**31) <= value < 2**31:
        return b"J" + struct.pack("<i", value)
    raw = value.to_bytes((value.bit_length() + 8) // 8, "little", signed=True)
    return b"\x8a" + bytes([len(raw)]) + raw


def _ops(data):
    """[(opcode name, argument, start, end)] of a pickle, or None when it does not parse."""
    try:
        ops = list(pickletools.genops(data))
    except Exception:  # noqa: BLE001: any malformed pickle
        return None
    result = []
    for i, (op, arg, pos) in enumerate(ops):
        end = ops[i + 1][2] if i + 1 < len(ops) else len(data)
        result.append((op.name, arg, pos, end))
    return result


def mutate_pickle(rng, data):
    ops = _ops(data)
    choice = rng.randrange(8)
    if ops is None or choice == 7:  # blind
        data = bytearray(data)
        if data:
            for _ in range(rng.randint(1, 4)):
                data[rng.randrange(len(data))] = rng.randrange(256)
        return bytes(data)
    if choice == 0:  # an integer (sizes, strides, offsets, numel, BINPUT/BINGET indices too)
        ints = [o for o in ops if o[0] in ("BININT1", "BININT2", "BININT", "LONG1")]
        if ints:
            _, arg, start, end = rng.choice(ints)
            new = rng.choice(INTERESTING_INTS + [arg + 1, arg - 1, arg * 2])
            return data[:start] + _encode_int(new) + data[end:]
    if choice == 1:  # a GLOBAL
        globals_ = [o for o in ops if o[0] == "GLOBAL"]
        if globals_:
            _, _, start, end = rng.choice(globals_)
            module, name = rng.choice(GLOBALS)
            return data[:start] + f"c{module}\n{name}\n".encode() + data[end:]
    if choice == 2:  # a string (storage keys, dict keys, 'cpu', 'little')
        strings = [o for o in ops if o[0] in ("BINUNICODE", "SHORT_BINUNICODE")]
        if strings:
            _, arg, start, end = rng.choice(strings)
            new = rng.choice(["", "0", "1", "99", "../data.pkl", "data.pkl", "cuda:0", "meta",
                              "conv1.weight", "fc.weight", arg * 2, arg + "\x00", "\udcff"[:0],
                              "a" * 1000])
            raw = new.encode("utf-8", "surrogatepass")
            return data[:start] + b"X" + struct.pack("<I", len(raw)) + raw + data[end:]
    if choice == 3:  # delete an opcode
        _, _, start, end = rng.choice(ops[1:] or ops)
        return data[:start] + data[end:]
    if choice == 4:  # duplicate an opcode
        _, _, start, end = rng.choice(ops)
        return data[:end] + data[start:end] + data[end:]
    if choice == 5:  # swap two neighbouring opcodes
        i = rng.randrange(max(1, len(ops) - 1))
        if i + 1 < len(ops):
            a, b = ops[i], ops[i + 1]
            return data[:a[2]] + data[b[2]:b[3]] + data[a[2]:a[3]] + data[b[3]:]
    # insert an opcode
    _, _, start, _ = rng.choice(ops)
    return data[:start] + rng.choice(INSERTIONS) + data[start:]


# -- zip mutations --------------------------------------------------------------------------------


def _members(data):
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        return [(info.filename, archive.read(info.filename)) for info in archive.infolist()]
    except Exception:  # noqa: BLE001: damaged archives are mutated blindly
        return None


def _build(members, compression=zipfile.ZIP_STORED):
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression) as archive:
        for name, content in members:
            info = zipfile.ZipInfo(name)
            info.compress_type = compression
            with_warnings_silenced(archive.writestr, info, content)
    return out.getvalue()


def with_warnings_silenced(function, *args):
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "Duplicate name" is one of the mutations
        return function(*args)


def mutate(rng, data):
    members = _members(data) if rng.random() < 0.85 else None
    if members is None:
        return mutate_blind(rng, data)
    choice = rng.randrange(10)
    pickles = [i for i, (name, _) in enumerate(members) if name.endswith("data.pkl")]
    storages = [i for i, (name, _) in enumerate(members) if "/data/" in name]
    compression = zipfile.ZIP_STORED
    if choice <= 3 and pickles:  # the pickle, most of the time
        i = rng.choice(pickles)
        members[i] = (members[i][0], mutate_pickle(rng, members[i][1]))
    elif choice == 4 and members:
        members.pop(rng.randrange(len(members)))
    elif choice == 5 and members:  # rename
        i = rng.randrange(len(members))
        name, content = members[i]
        new = rng.choice([name.replace("/", "x/", 1), name.split("/", 1)[-1], "other/" + name,
                          name + "/", "../" + name, name.upper(), "a/b/" + name, ""])
        members[i] = (new or "x", content)
    elif choice == 6 and members:  # duplicate a member
        members.insert(rng.randrange(len(members) + 1), rng.choice(members))
    elif choice == 7 and storages:  # a storage's size
        i = rng.choice(storages)
        name, content = members[i]
        content = rng.choice([content[:-1], content[: len(content) // 2], b"", content + b"\0",
                              content * 2, content[1:]])
        members[i] = (name, content)
    elif choice == 8:  # byte order, format version, alignment
        for i, (name, content) in enumerate(members):
            if name.endswith(("byteorder", ".format_version", ".storage_alignment")):
                members[i] = (name, rng.choice([b"big", b"little", b"", b"middle", b"1", b"-64",
                                                b"\xff\xfe"]))
    else:
        compression = rng.choice([zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA])
    return _build(members, compression)


def mutate_blind(rng, data):
    data = bytearray(data)
    choice = rng.randrange(4)
    if choice == 0 and data:
        del data[rng.randrange(len(data) + 1):]
    elif choice == 1:
        # The central directory and its end record sit at the end: flip bytes there.
        tail = max(0, len(data) - rng.choice([22, 100, 2000]))
        for _ in range(rng.randint(1, 6)):
            if len(data) > tail:
                data[rng.randrange(tail, len(data))] = rng.randrange(256)
    elif choice == 2 and data:
        for _ in range(rng.randint(1, 8)):
            data[rng.randrange(len(data))] = rng.randrange(256)
    else:
        data += bytes(rng.randrange(256) for _ in range(rng.choice([1, 22, 100])))
    return bytes(data)


# -- the audit hook: nothing from the file may run ------------------------------------------------


class UntrustedCodeExecution(BaseException):
    """An audit event that reading a weights file must never cause. A BaseException, so that
    the reader's own ``except Exception`` (which turns errors into FileFormatError) cannot
    hide it; violations are also recorded in case something swallows even that."""


_FORBIDDEN_PREFIXES = ("os.system", "os.exec", "os.spawn", "os.posix_spawn", "os.fork",
                       "os.kill", "os.remove", "os.unlink", "os.rename", "os.rmdir", "os.mkdir",
                       "os.chmod", "os.chown", "os.putenv", "os.unsetenv", "os.truncate",
                       "subprocess.", "shutil.", "socket.", "urllib.", "http.", "ctypes.",
                       "exec", "compile", "code.__new__", "function.__new__", "marshal.",
                       "pickle.find_class", "builtins.input", "cpython.run_", "webbrowser.",
                       "sqlite3.", "winreg.", "glob.glob", "os.listdir", "os.scandir")
_ALLOWED_IMPORTS = ("zlib", "bz2", "_bz2", "lzma", "_lzma", "_compression", "binascii",
                    "encodings")
_guard = {"active": False, "path": None, "violations": []}
# Module files are opened by imports, which the "import" check already polices.
_STDLIB = __import__("sysconfig").get_paths()["stdlib"]


def _audit(event, args):
    if not _guard["active"]:
        return
    try:
        _check_event(event, args)
    except UntrustedCodeExecution as violation:
        _guard["violations"].append(str(violation))
        raise


def _check_event(event, args):
    if event.startswith(_FORBIDDEN_PREFIXES):
        raise UntrustedCodeExecution(f"audit event {event} {str(args)[:200]}")
    if event == "import" and not str(args[0]).startswith(_ALLOWED_IMPORTS):
        raise UntrustedCodeExecution(f"import of {args[0]!r} while reading the file")
    if event == "open":
        path, mode = args[0], args[1]
        if isinstance(path, int):
            return
        writing = isinstance(mode, str) and set(mode) & set("wax+")
        if str(path).startswith(_STDLIB + os.sep) and not writing:
            return
        if str(path) != _guard["path"] or writing:
            raise UntrustedCodeExecution(f"open({path!r}, {mode!r}) while reading the file")


class PthTarget:
    name = "pth"
    suffix = ".pth"
    description = __doc__.split("\n\n")[0]

    def __init__(self):
        self._seeds = None
        self._hooked = False

    def seeds(self):
        if self._seeds is None:
            self._seeds = [(name, (PTH_DATA / f"{name}.pth").read_bytes()) for name in SEED_FILES
                           if (PTH_DATA / f"{name}.pth").is_file()]
        return self._seeds

    def generate(self, rng):
        data = rng.choice(self.seeds())[1]
        for _ in range(rng.choice([1, 1, 1, 2, 2, 3])):
            data = mutate(rng, data)
        return data

    def mutate(self, rng, data):
        return mutate(rng, data)

    def _install_hook(self):
        if not self._hooked:
            from swiftcam import pth
            for _, data in self.seeds()[:1]:  # warm up lazy imports before the hook watches
                pth.read_pth(PTH_DATA / f"{SEED_FILES[0]}.pth")
            import bz2  # noqa: F401  (zipfile imports decompressors lazily)
            import lzma  # noqa: F401
            # Codecs the standard library loads on first use (a codec module's import shows as
            # marshal.loads of its .pyc): zipfile's for non-UTF-8 member names, pickle's and
            # pickletools' for text opcodes. None is chosen by the file.
            for codec in ("cp437", "raw_unicode_escape", "unicode_escape", "latin_1", "ascii",
                          "utf_8"):
                __import__(f"encodings.{codec}")
            sys.addaudithook(_audit)
            self._hooked = True

    def execute(self, path):
        import swiftcam
        from swiftcam import pth
        self._install_hook()
        _guard.update(active=True, path=str(path), violations=[])
        try:
            state = pth.read_pth(path)
        finally:
            _guard["active"] = False
            if _guard["violations"]:
                raise UntrustedCodeExecution("; ".join(_guard["violations"]))
        model = swiftcam.load(state)
        try:
            x = np.linspace(-1, 1, model.input_channels * 99, dtype=np.float32).reshape(
                1, model.input_channels, 9, 11)
            model(x)
            swiftcam.GradCAM(model, ["layer4"])(x)
        finally:
            model.close()


TARGET = PthTarget()

if __name__ == "__main__":
    sys.exit(harness.main(TARGET, str(Path(__file__).resolve())))
