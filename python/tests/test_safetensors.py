"""The pure-NumPy safetensors reader and writer."""

import json

import numpy as np
import pytest

from swiftcam import _safetensors
from swiftcam.errors import FileFormatError


def test_round_trip(tmp_path):
    tensors = {
        "a": np.arange(12, dtype=np.float32).reshape(3, 4),
        "b": np.array(7, dtype=np.int64),
        "c": np.linspace(0, 1, 5),
        "d": np.array([True, False]),
        "e": np.zeros((0, 3), dtype=np.float16),
        "f": np.arange(6, dtype=">f4").reshape(2, 3),  # big-endian in, little-endian stored
    }
    path = tmp_path / "t.safetensors"
    _safetensors.write(path, tensors, metadata={"format": "pt"})
    read, metadata = _safetensors.read(path, metadata=True)
    assert list(read) == list(tensors)
    assert metadata == {"format": "pt"}
    for name, value in tensors.items():
        assert read[name].shape == value.shape
        np.testing.assert_array_equal(read[name], value)
    assert read["a"].dtype == np.float32 and read["a"].flags.writeable


def test_header_is_aligned(tmp_path):
    path = tmp_path / "t.safetensors"
    _safetensors.write(path, {"x": np.zeros(3, np.float32)})
    data = path.read_bytes()
    assert int.from_bytes(data[:8], "little") % 8 == 0


def test_bf16_is_widened(tmp_path):
    values = np.array([1.0, -2.5, 3.140625], dtype=np.float32)
    raw = (values.view(np.uint32) >> 16).astype("<u2")
    header = json.dumps({"x": {"dtype": "BF16", "shape": [3],
                               "data_offsets": [0, 6]}}).encode()
    path = tmp_path / "bf16.safetensors"
    path.write_bytes(len(header).to_bytes(8, "little") + header + raw.tobytes())
    np.testing.assert_array_equal(_safetensors.read(path)["x"], values)


def test_reads_fixture(basic):
    weights = _safetensors.read(basic.weights_path)
    assert weights["fc.weight"].shape == (10, 128)
    assert weights["bn1.num_batches_tracked"].dtype == np.int64


def _with_header(header, data=b"\0" * 4):
    return len(header).to_bytes(8, "little") + header + data


@pytest.mark.parametrize("content, message", [
    (b"", "fewer than the 8-byte"),
    ((1000).to_bytes(8, "little") + b"{}", "exceeds the file"),
    ((4).to_bytes(8, "little") + b"[1] ", "not a JSON object"),
    ((4).to_bytes(8, "little") + b"{no}", "not JSON"),
    (_with_header(b'{"x":{"dtype":"Q9","shape":[1],"data_offsets":[0,4]}}'),
     "unsupported dtype"),
    (_with_header(b'{"x":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}}'),
     "invalid shape"),
    (_with_header(b'{"x":[1, 2]}'), "not an object"),
])
def test_malformed(tmp_path, content, message):
    path = tmp_path / "bad.safetensors"
    path.write_bytes(content)
    with pytest.raises(FileFormatError, match=message):
        _safetensors.read(path)


def test_offsets_checked(tmp_path):
    header = b'{"x":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}}'
    path = tmp_path / "bad.safetensors"
    path.write_bytes(len(header).to_bytes(8, "little") + header + b"\0" * 8)
    with pytest.raises(FileFormatError, match="invalid data offsets"):
        _safetensors.read(path)
    header = b'{"x":{"dtype":"F32","shape":[3],"data_offsets":[0,16]}}'
    path.write_bytes(len(header).to_bytes(8, "little") + header + b"\0" * 16)
    with pytest.raises(FileFormatError, match="needs 12 bytes"):
        _safetensors.read(path)


def test_unstorable_dtype(tmp_path):
    with pytest.raises(TypeError, match="cannot be stored"):
        _safetensors.write(tmp_path / "x.safetensors", {"x": np.zeros(2, np.complex64)})
