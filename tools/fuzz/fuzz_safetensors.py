#!/usr/bin/env python3
"""Fuzz swiftcam.load on mutated .safetensors files, through the real C path (issue 8).

    python3 tools/fuzz/fuzz_safetensors.py --runs 100000 --seed 1 --progress 30
    python3 tools/fuzz/fuzz_safetensors.py --engine atheris --runs 20000 --seed 1

Each input is a mutation of one seed file: the real fixture Tests/Fixtures/basic/weights.safetensors
(and grouped/), plus small hand-made ResNets (BasicBlock and grouped Bottleneck, F32 / F16 /
BF16 / F64, with and without __metadata__ and num_batches_tracked). Mutations are structure-aware
(the JSON header is parsed and changed: dtypes, shapes, data_offsets, keys, duplicates, entry
types, __metadata__, nesting; the 8-byte length prefix) and blind (flipped, inserted and deleted
bytes in the header, truncation and extension of the file, data bytes), stacked 1 to 4 deep.

Each input is written to a file in /dev/shm and loaded with swiftcam.load (C extension ->
C ABI -> Swift reader, memory-mapped). When the load succeeds, the model is also run: a forward
pass and a Grad-CAM on a 1 x C x 9 x 11 input, then close(). Outcomes: loaded, an expected
swiftcam.SwiftCAMError (counted per class), an unexpected exception (any other type: a bug),
a crash (the child interpreter died) or a hang (no progress for --timeout seconds). See
harness.py for the supervisor, and README.md for the recorded results.
"""

import json
import struct
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import harness  # noqa: E402

REPO_ROOT = harness.REPO_ROOT
FIXTURES = REPO_ROOT / "Tests" / "Fixtures"

DTYPES = {"F32": "<f4", "F16": "<f2", "F64": "<f8", "BF16": None, "I64": "<i8", "I32": "<i4",
          "U8": "u1", "BOOL": "?"}
DTYPE_NAMES = list(DTYPES) + ["I16", "I8", "U16", "U32", "U64", "F8_E4M3", "F8_E5M2", "C64",
                              "f32", "", "F32 ", "\u00c9"]
INTERESTING_INTS = [0, 1, 2, 3, 4, 7, 8, 15, 16, 63, 64, 255, 256, 4095, 4096, 65535, 65536,
                    2**31 - 1, 2**31, 2**32 - 1, 2**32, 2**53, 2**53 + 1, 2**62, 2**63 - 1, 2**63,
                    2**64 - 1, 2**64, -1, -2, -(2**31), -(2**63)]
INTERESTING_JSON = [None, True, False, 0, -1, 1.5, -0.0, 1e308, -1e308, 1e-320, "", "F32", [],
                    {}, [0], [0, 0], [[1]], {"dtype": "F32"}, "\u0000", "a" * 300]


# -- seed files -----------------------------------------------------------------------------------


def tiny_resnet_state(kind="basic", seed=0):
    """A valid state dict of a very small torchvision-style ResNet (one block per stage)."""
    rng = np.random.default_rng(seed)

    def conv(out, inp, k):
        return rng.standard_normal((out, inp, k, k)).astype(np.float32) * 0.3

    def bn(prefix, channels, state):
        state[f"{prefix}.weight"] = rng.uniform(0.5, 1.5, channels).astype(np.float32)
        state[f"{prefix}.bias"] = rng.standard_normal(channels).astype(np.float32) * 0.1
        state[f"{prefix}.running_mean"] = rng.standard_normal(channels).astype(np.float32) * 0.1
        state[f"{prefix}.running_var"] = rng.uniform(0.5, 2.0, channels).astype(np.float32)
        state[f"{prefix}.num_batches_tracked"] = np.array(5, dtype=np.int64)

    state = {}
    stem = 4
    state["conv1.weight"] = conv(stem, 3, 7)
    bn("bn1", stem, state)
    inplanes = stem
    planes = [4, 4, 8, 8]
    for stage, p in enumerate(planes, start=1):
        prefix = f"layer{stage}.0"
        stride = 1 if stage == 1 else 2
        if kind == "basic":
            out = p
            state[f"{prefix}.conv1.weight"] = conv(p, inplanes, 3)
            bn(f"{prefix}.bn1", p, state)
            state[f"{prefix}.conv2.weight"] = conv(p, p, 3)
            bn(f"{prefix}.bn2", p, state)
        else:  # grouped bottleneck: width 2p, 2 groups
            width, out = 2 * p, 4 * p
            state[f"{prefix}.conv1.weight"] = conv(width, inplanes, 1)
            bn(f"{prefix}.bn1", width, state)
            state[f"{prefix}.conv2.weight"] = conv(width, width // 2, 3)
            bn(f"{prefix}.bn2", width, state)
            state[f"{prefix}.conv3.weight"] = conv(out, width, 1)
            bn(f"{prefix}.bn3", out, state)
        if stride != 1 or inplanes != out:
            state[f"{prefix}.downsample.0.weight"] = conv(out, inplanes, 1)
            bn(f"{prefix}.downsample.1", out, state)
        inplanes = out
    state["fc.weight"] = rng.standard_normal((5, inplanes)).astype(np.float32)
    state["fc.bias"] = rng.standard_normal(5).astype(np.float32)
    return state


def encode(header, data):
    """A safetensors file from a header (dict or raw bytes) and a data section."""
    text = header if isinstance(header, bytes) else json.dumps(header).encode()
    return struct.pack("<Q", len(text)) + text + data


def write_state(state, dtype="F32", metadata=None):
    """Serialise a state dict (float tensors converted to ``dtype``; int tensors kept)."""
    header, chunks, offset = {}, [], 0
    if metadata is not None:
        header["__metadata__"] = metadata
    for name, array in state.items():
        array = np.asarray(array)
        if array.dtype.kind == "f":
            if dtype == "BF16":
                bits = np.ascontiguousarray(array, dtype="<f4").view("<u4")
                raw = (bits >> 16).astype("<u2").tobytes()
            else:
                raw = np.ascontiguousarray(array, dtype=DTYPES[dtype]).tobytes()
            name_dtype = dtype
        else:
            raw = np.ascontiguousarray(array, dtype="<i8").tobytes()
            name_dtype = "I64"
        header[name] = {"dtype": name_dtype, "shape": list(array.shape),
                        "data_offsets": [offset, offset + len(raw)]}
        chunks.append(raw)
        offset += len(raw)
    return encode(header, b"".join(chunks))


def split(data):
    """(header dict, data bytes) of a well-formed file, or None."""
    if len(data) < 8:
        return None
    (length,) = struct.unpack("<Q", data[:8])
    if length > len(data) - 8:
        return None
    try:
        header = json.loads(data[8:8 + length])
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None
    if not isinstance(header, dict):
        return None
    return header, data[8 + length:]


# -- mutations ------------------------------------------------------------------------------------


def _tensor_names(header):
    return [k for k, v in header.items() if k != "__metadata__" and isinstance(v, dict)]


def _some_int(rng, near=None):
    if near is not None and rng.random() < 0.5:
        return near + rng.choice([-8, -4, -2, -1, 1, 2, 4, 8, 64, 4096])
    return rng.choice(INTERESTING_INTS)


def mutate_header(rng, header, data):
    """One structure-aware change of the parsed header; returns (header or bytes, data)."""
    names = _tensor_names(header)
    choice = rng.randrange(19)
    if not names:
        choice = 15
    name = rng.choice(names) if names else None
    entry = header[name] if names else None
    if choice == 0:    # dtype
        entry["dtype"] = rng.choice(DTYPE_NAMES + INTERESTING_JSON[:8])
    elif choice == 1:  # one dimension
        shape = entry.get("shape")
        if isinstance(shape, list) and shape:
            i = rng.randrange(len(shape))
            shape[i] = _some_int(rng, shape[i] if isinstance(shape[i], int) else None)
        else:
            entry["shape"] = [_some_int(rng)]
    elif choice == 2:  # rank
        shape = entry.get("shape")
        if isinstance(shape, list):
            if shape and rng.random() < 0.5:
                shape.pop(rng.randrange(len(shape)))
            else:
                shape.insert(rng.randrange(len(shape) + 1), rng.choice([0, 1, 2, 3, 7]))
    elif choice == 3:  # one offset
        offsets = entry.get("data_offsets")
        if isinstance(offsets, list) and offsets:
            i = rng.randrange(len(offsets))
            old = offsets[i] if isinstance(offsets[i], int) else None
            offsets[i] = _some_int(rng, old) if rng.random() < 0.8 else len(data) + rng.randrange(9)
    elif choice == 4:  # offsets of another tensor (overlap) or swapped
        other = header[rng.choice(names)]
        if rng.random() < 0.5 and isinstance(other.get("data_offsets"), list):
            entry["data_offsets"] = list(other["data_offsets"])
        elif isinstance(entry.get("data_offsets"), list):
            entry["data_offsets"] = entry["data_offsets"][::-1]
    elif choice == 5:  # shift a tensor's window
        offsets = entry.get("data_offsets")
        if isinstance(offsets, list) and len(offsets) == 2 and all(
                isinstance(o, int) for o in offsets):
            delta = rng.choice([-4, -1, 1, 2, 4, 64])
            entry["data_offsets"] = [offsets[0] + delta, offsets[1] + delta]
    elif choice == 6:  # delete a tensor
        del header[name]
    elif choice == 7:  # rename a tensor
        new = rng.choice([name + "x", name.replace("layer", "layer9"), "", "__metadata__",
                          name + "\u0000", name.upper(), rng.choice(names),
                          name.replace(".weight", ".bias"), "fc.weight"])
        header[new] = header.pop(name)
    elif choice == 8:  # a field of the wrong type
        field = rng.choice(["dtype", "shape", "data_offsets"])
        entry[field] = rng.choice(INTERESTING_JSON)
    elif choice == 9:  # drop a field, or add an unknown one
        field = rng.choice(["dtype", "shape", "data_offsets", "extra"])
        if field in entry and rng.random() < 0.7:
            del entry[field]
        else:
            entry[field] = rng.choice(INTERESTING_JSON)
    elif choice == 10:  # the entry is not an object
        header[name] = rng.choice(INTERESTING_JSON)
    elif choice == 11:  # __metadata__
        header["__metadata__"] = rng.choice(
            [{"format": "pt"}, {"a": 1}, [], "x", None, {"": ""}, {"k": {"n": "v"}}])
    elif choice == 12:  # a duplicate key (raw JSON: dicts cannot hold one)
        text = json.dumps(header).encode()
        extra = json.dumps({name: rng.choice([entry, INTERESTING_JSON[-6]])}).encode()[1:-1]
        return text[:-1] + b", " + extra + b"}", data
    elif choice == 13:  # deep nesting in a value
        depth = rng.choice([10, 63, 64, 65, 1000, 100000])
        text = json.dumps(header).encode()
        nested = b"[" * depth + b"]" * depth
        return text[:-1] + b', "deep": ' + nested + b"}", data
    elif choice == 14:  # a second copy of the data, tensors pointing into it
        shift = len(data)
        data = data + data
        for other in names:
            offsets = header[other].get("data_offsets")
            if rng.random() < 0.5 and isinstance(offsets, list) and len(offsets) == 2 and all(
                    isinstance(o, int) for o in offsets):
                header[other]["data_offsets"] = [offsets[0] + shift, offsets[1] + shift]
    elif choice in (16, 17) and isinstance(entry.get("shape"), list) and all(
            isinstance(d, int) and d >= 0 for d in entry["shape"]):
        # Another shape with the same element count: the file stays valid, the network's
        # shape inference and checks get unusual layouts.
        shape = entry["shape"]
        count = int(np.prod(shape)) if shape else 1
        if len(shape) >= 2 and rng.random() < 0.4:
            i, j = rng.sample(range(len(shape)), 2)
            shape[i], shape[j] = shape[j], shape[i]
        elif count > 0:
            divisors = [d for d in range(1, min(count, 4096) + 1) if count % d == 0]
            d = rng.choice(divisors)
            entry["shape"] = rng.choice([[count], [d, count // d], [count // d, d, 1, 1],
                                         [d, 1, 1, count // d], [1] * rng.randint(0, 3) + [count],
                                         [count // d, d // 7 if d % 7 == 0 and d // 7 else d,
                                          7 if d % 7 == 0 else 1, 1]])
            if int(np.prod(entry["shape"])) != count:
                entry["shape"] = [count]
    elif choice == 18 and isinstance(entry.get("data_offsets"), list) and len(
            entry["data_offsets"]) == 2 and all(isinstance(o, int) for o in entry["data_offsets"]):
        # Another dtype with a consistent shape (or a zero-size tensor).
        begin, end = entry["data_offsets"]
        size = {"F64": 8, "I64": 8, "F32": 4, "I32": 4, "F16": 2, "BF16": 2, "I16": 2, "I8": 1,
                "U8": 1, "BOOL": 1}
        dtype = rng.choice(list(size))
        if rng.random() < 0.2:
            entry.update(dtype=dtype, shape=[rng.choice([0, 3]), 0], data_offsets=[begin, begin])
        elif (end - begin) % size[dtype] == 0:
            entry.update(dtype=dtype, shape=[(end - begin) // size[dtype]])
    else:               # a new tensor
        header[rng.choice(["extra.weight", "layer5.0.conv1.weight", "fc.weight",
                           "bn1.num_batches_tracked"])] = {
            "dtype": rng.choice(DTYPE_NAMES), "shape": [rng.choice([0, 1, 4])],
            "data_offsets": [0, rng.choice([0, 4, 16])]}
    return header, data


def mutate_bytes(rng, data):
    """One blind change of the raw bytes."""
    data = bytearray(data)
    header_end = min(len(data), 8 + (struct.unpack("<Q", data[:8])[0] if len(data) >= 8 else 0))
    choice = rng.randrange(9)
    if choice == 0 and len(data) >= 8:   # the length prefix
        (length,) = struct.unpack("<Q", data[:8])
        new = rng.choice([length + rng.choice([-9, -2, -1, 1, 2, 8]), 0, 1, len(data) - 8,
                          len(data) - 7, 2**63, 2**64 - 1, 100 * 2**20 + 1,
                          rng.getrandbits(64)]) % 2**64
        data[:8] = struct.pack("<Q", new)
    elif choice == 1 and header_end > 8:  # flip bytes in the header
        for _ in range(rng.randint(1, 4)):
            i = rng.randrange(8, header_end)
            data[i] = rng.choice([rng.randrange(256), ord('"'), ord("{"), ord("}"), ord("["),
                                  ord(","), ord(":"), ord("\\"), 0, 0xFF, ord("-"), ord("9")])
    elif choice == 2 and header_end > 8:  # delete a span of the header (prefix unchanged)
        i = rng.randrange(8, header_end)
        del data[i:i + rng.randint(1, 16)]
    elif choice == 3 and header_end > 8:  # insert bytes into the header
        i = rng.randrange(8, header_end)
        data[i:i] = rng.choice([b"\\u0000", b"\xff\xfe", b"1e999", b"-", b"{", b"]", b"\x00",
                                b"null", b'"', b"\\ud800", bytes(rng.randrange(256)
                                                                 for _ in range(4))])
    elif choice == 4:  # truncate
        cut = rng.choice([0, 1, 7, 8, 9, header_end - 1, header_end, header_end + 1,
                          rng.randrange(len(data) + 1), len(data) - 1, len(data) - 4])
        del data[max(0, cut):]
    elif choice == 5:  # extend
        data += bytes(rng.randrange(256) for _ in range(rng.choice([1, 3, 4, 64, 1000])))
    elif choice == 6 and len(data) > header_end:  # data bytes: NaN, Inf, denormals, garbage
        for _ in range(rng.randint(1, 16)):
            i = rng.randrange(header_end, len(data))
            pattern = rng.choice([b"\x00\x00\xc0\x7f", b"\x00\x00\x80\x7f", b"\x01\x00\x00\x00",
                                  b"\xff\xff\xff\xff", b"\x00\x7c", b"\xff"])
            data[i:i + len(pattern)] = pattern
    elif choice == 7 and header_end > 8:  # replace the header's length and bytes by a short text
        text = rng.choice([b"{}", b"[]", b'{"a":1}', b"null", b"", b" ", b'{"__metadata__":{}}',
                           b'{"conv1.weight":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}'])
        data = bytearray(struct.pack("<Q", len(text)) + text + bytes(data[header_end:]))
    else:  # splice: a part of the header repeated
        if header_end > 9:
            i = rng.randrange(8, header_end)
            j = rng.randrange(i, header_end)
            data[j:j] = data[i:j]
    return bytes(data)


def mutate(rng, data):
    """One mutation of ``data``, structure-aware when it still parses."""
    parsed = split(data) if rng.random() < 0.7 else None
    if parsed is None:
        return mutate_bytes(rng, data)
    header, body = parsed
    header, body = mutate_header(rng, header, body)
    if isinstance(header, bytes):
        return encode(header, body)
    try:
        return encode(header, body)
    except (ValueError, TypeError):  # e.g. a NaN the JSON encoder refuses
        return encode(b"{}", body)


class SafetensorsTarget:
    name = "safetensors"
    suffix = ".safetensors"
    description = __doc__.split("\n\n")[0]

    def __init__(self):
        self._seeds = None

    def seeds(self):
        if self._seeds is None:
            seeds = []
            for kind in ("basic", "bottleneck"):
                state = tiny_resnet_state(kind)
                for dtype in ("F32", "F16", "BF16", "F64"):
                    seeds.append((f"tiny-{kind}-{dtype}", write_state(state, dtype)))
                seeds.append((f"tiny-{kind}-meta", write_state(
                    {k: v for k, v in state.items() if "num_batches" not in k}, "F32",
                    metadata={"format": "pt", "note": "swiftcam fuzz seed"})))
            for case in ("basic", "grouped"):
                path = FIXTURES / case / "weights.safetensors"
                if path.is_file():
                    seeds.append((f"fixture-{case}", path.read_bytes()))
            self._seeds = seeds
        return self._seeds

    def generate(self, rng):
        seeds = self.seeds()
        small = [s for name, s in seeds if name.startswith("tiny-")]
        large = [s for name, s in seeds if not name.startswith("tiny-")]
        # The real fixtures are ~1 MB and slower to load; they are 1 input in 10.
        pool = large if large and rng.random() < 0.1 else small
        data = rng.choice(pool)
        for _ in range(rng.choice([1, 1, 1, 2, 2, 3, 4])):
            data = mutate(rng, data)
        return data

    def mutate(self, rng, data):
        return mutate(rng, data)

    def execute(self, path):
        import swiftcam
        model = swiftcam.load(path)
        try:
            x = np.linspace(-1, 1, model.input_channels * 99, dtype=np.float32).reshape(
                1, model.input_channels, 9, 11)
            model(x)
            swiftcam.GradCAM(model, ["layer4"])(x)
        finally:
            model.close()


TARGET = SafetensorsTarget()

if __name__ == "__main__":
    sys.exit(harness.main(TARGET, str(Path(__file__).resolve())))
