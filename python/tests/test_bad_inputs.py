"""Bad inputs and bad weights raise the right exception with a helpful message."""

import errno
import os

import numpy as np
import pytest

import swiftcam
from swiftcam import _safetensors
from swiftcam.errors import (FileFormatError, InputShapeError, InvalidInputError,
                             ModelFileNotFoundError, SwiftCAMError, SwiftCAMIOError,
                             UnknownLayerError, UnsupportedModelError, WeightsError)

# -- inputs -------------------------------------------------------------------------------------


@pytest.mark.parametrize("x, dtype_text", [
    (np.array([[[[object()]]]], dtype=object), "object"),
    (np.full((1, 3, 8, 8), "a"), "<U1"),
    (np.zeros((1, 3, 8, 8), dtype=np.complex64), "complex64"),
    (np.zeros((1, 3, 8, 8), dtype="datetime64[s]"), "datetime64"),
    (np.zeros((1, 3, 8, 8), dtype="timedelta64[s]"), "timedelta64"),
])
def test_non_numeric_dtype(basic_model, x, dtype_text):
    with pytest.raises(InvalidInputError, match=f"x: expected a real numeric array.*got dtype "
                                                f"{dtype_text}"):
        basic_model(x)


def test_ragged_input(basic_model):
    with pytest.raises(InvalidInputError, match="cannot be converted to a numeric array"):
        basic_model([[1.0, 2.0], [3.0]])


def test_single_image_suggests_batch_axis(basic_model):
    with pytest.raises(InputShapeError, match=r"single image of shape \(3, 32, 32\).*x\[None\]"):
        basic_model(np.zeros((3, 32, 32), dtype=np.float32))


@pytest.mark.parametrize("shape", [(32,), (32, 32), (1, 1, 3, 32, 32)])
def test_wrong_rank(basic_model, shape):
    with pytest.raises(InputShapeError, match=r"expected shape \(N, 3, H, W\), got "
                                              rf"{len(shape)} dimension"):
        basic_model(np.zeros(shape, dtype=np.float32))


def test_wrong_channel_count(basic_model):
    with pytest.raises(InputShapeError,
                       match=r"expected shape \(N, 3, H, W\), got \(2, 4, 32, 32\)"):
        basic_model(np.zeros((2, 4, 32, 32), dtype=np.float32))


def test_channels_last_hint(basic_model):
    with pytest.raises(InputShapeError, match="channels-last"):
        basic_model(np.zeros((1, 32, 32, 3), dtype=np.float32))


def test_empty_batch(basic_model):
    with pytest.raises(InputShapeError, match="batch is empty"):
        basic_model(np.zeros((0, 3, 32, 32), dtype=np.float32))


@pytest.mark.parametrize("shape", [(1, 3, 0, 32), (1, 3, 32, 0)])
def test_image_too_small(basic_model, shape):
    with pytest.raises(InputShapeError, match="too small"):
        basic_model(np.zeros(shape, dtype=np.float32))


def test_engine_rejects_empty_image_itself(basic_model):
    """The Python checks bypassed: the engine's own guard answers, nothing traps."""
    logits = np.empty((1, 10), dtype=np.float32)
    with pytest.raises(InputShapeError, match="empty"):
        basic_model._handle.forward(np.zeros((1, 3, 0, 5), dtype=np.float32), logits)


def test_input_errors_are_swiftcam_and_value_errors(basic_model):
    with pytest.raises(SwiftCAMError):
        basic_model(np.zeros((1, 4, 8, 8)))
    with pytest.raises(ValueError):
        basic_model(np.zeros((1, 4, 8, 8)))


def test_unknown_layer_lists_valid_names(basic_model, basic):
    with pytest.raises(UnknownLayerError, match=r"unknown layer 'layer5'.*conv1, bn1"):
        basic_model.activations(basic.input, layers=["layer5"])
    with pytest.raises(KeyError):
        basic_model.activations(basic.input, layers="fc")
    with pytest.raises(UnknownLayerError, match="out of range"):
        basic_model.activations(basic.input, layers=[99])
    with pytest.raises(TypeError, match="layer names"):
        basic_model.activations(basic.input, layers=[1.5])


def test_unknown_layer_error_str_is_not_quoted():
    assert str(UnknownLayerError("no such layer")) == "no such layer"


# -- files --------------------------------------------------------------------------------------


def test_missing_file(tmp_path):
    path = tmp_path / "nope.safetensors"
    with pytest.raises(FileNotFoundError, match="No such file") as info:
        swiftcam.load(path)
    assert isinstance(info.value, ModelFileNotFoundError)
    assert info.value.errno == errno.ENOENT
    assert info.value.filename == str(path)


def test_directory(tmp_path):
    with pytest.raises(SwiftCAMIOError, match="is a directory"):
        swiftcam.load(tmp_path)


def test_fifo_is_refused_without_blocking(tmp_path):
    path = tmp_path / "pipe.safetensors"
    os.mkfifo(path)
    with pytest.raises(SwiftCAMIOError, match="not a regular file"):
        swiftcam.load(path)


def test_damaged_torch_checkpoint(tmp_path):
    path = tmp_path / "model.pth"
    path.write_bytes(b"PK\x03\x04 not a safetensors file")
    with pytest.raises(FileFormatError, match=r"torch\.save file.*damaged"):
        swiftcam.load(path)


def test_wrong_suffix_gets_a_note(tmp_path):
    path = tmp_path / "weights.txt"
    path.write_text("hello, I am text")
    with pytest.raises(FileFormatError, match=r"expected a \.safetensors file"):
        swiftcam.load(path)


def test_truncated_file(tmp_path, basic):
    data = basic.weights_path.read_bytes()
    path = tmp_path / "truncated.safetensors"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(FileFormatError, match="truncated|claims|beyond|exceeds|short"):
        swiftcam.load(path)


def test_truncated_header(tmp_path, basic):
    path = tmp_path / "header.safetensors"
    path.write_bytes(basic.weights_path.read_bytes()[:100])
    with pytest.raises(FileFormatError, match="not a valid safetensors file"):
        swiftcam.load(path)


def test_empty_file(tmp_path):
    path = tmp_path / "empty.safetensors"
    path.write_bytes(b"")
    with pytest.raises(FileFormatError, match="safetensors"):
        swiftcam.load(path)


def test_corrupt_header(tmp_path):
    path = tmp_path / "corrupt.safetensors"
    header = b"{not json!!!!!!}"
    path.write_bytes(len(header).to_bytes(8, "little") + header)
    with pytest.raises(FileFormatError, match=r"corrupt\.safetensors.*JSON"):
        swiftcam.load(path)


def test_offsets_beyond_data(tmp_path):
    path = tmp_path / "offsets.safetensors"
    header = b'{"fc.weight":{"dtype":"F32","shape":[4,4],"data_offsets":[0,64]}}'
    path.write_bytes(len(header).to_bytes(8, "little") + header + b"\0" * 16)
    with pytest.raises(FileFormatError):
        swiftcam.load(path)


# -- weights ------------------------------------------------------------------------------------


def _edited(basic, remove=(), replace=None, add=None):
    state = dict(basic.weights)
    for key in remove:
        del state[key]
    state.update(replace or {})
    state.update(add or {})
    return state


def _both_ways(tmp_path, state):
    """The same state dict loaded from memory and from a file written with it."""
    path = tmp_path / "edited.safetensors"
    _safetensors.write(path, state)
    return [state, path]


def test_missing_weight(tmp_path, basic):
    state = _edited(basic, remove=["layer2.0.bn2.running_var"])
    for source in _both_ways(tmp_path, state):
        with pytest.raises(WeightsError, match=r"missing tensor 'layer2\.0\.bn2\.running_var'"):
            swiftcam.load(source)


def test_misshaped_weight(tmp_path, basic):
    conv = basic.weights["layer2.0.conv2.weight"]
    state = _edited(basic, replace={"layer2.0.conv2.weight": conv[:, :, :2].copy()})
    for source in _both_ways(tmp_path, state):
        with pytest.raises(WeightsError, match=r"'layer2\.0\.conv2\.weight' has shape "
                                               r"\[32, 32, 2, 3\], expected \[32, 32, 3, 3\]"):
            swiftcam.load(source)


def test_unexpected_weight(tmp_path, basic):
    state = _edited(basic, add={"layer9.0.conv1.weight": np.zeros((2, 2), np.float32)})
    for source in _both_ways(tmp_path, state):
        with pytest.raises(WeightsError, match=r"unexpected tensor 'layer9\.0\.conv1\.weight'"):
            swiftcam.load(source)


def test_not_a_resnet(basic):
    with pytest.raises(UnsupportedModelError, match="not a torchvision ResNet"):
        swiftcam.load({"encoder.weight": np.zeros((3, 3), np.float32)})
    with pytest.raises(UnsupportedModelError):
        swiftcam.load({})


def test_non_numeric_weight(basic):
    state = _edited(basic, replace={"fc.bias": np.array(["a"] * 10)})
    with pytest.raises(WeightsError, match=r"fc\.bias: expected a real numeric tensor"):
        swiftcam.load(state)


def test_non_string_key(basic):
    with pytest.raises(WeightsError, match="keys must be str"):
        swiftcam.load({1: np.zeros(3, np.float32)})


def test_load_rejects_other_types():
    with pytest.raises(TypeError, match="path to a .safetensors file or a state dict"):
        swiftcam.load(42)
