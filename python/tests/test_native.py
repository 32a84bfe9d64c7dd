"""The C extension on its own: buffer checks, status mapping, nothing can crash the process."""

import array

import numpy as np
import pytest

from swiftcam import _native, errors
from swiftcam.errors import BufferSizeError, InvalidInputError, UnknownLayerError


@pytest.fixture
def handle(basic_model):
    return basic_model._handle


def test_status_strings():
    assert _native.status_string(0) == "ok"
    for status in range(1, 10):
        assert _native.status_string(status)
    assert _native.status_string(12345)  # unknown codes still give a string


def test_status_mapping_covers_every_code():
    expected = {1: errors.InvalidInputError, 2: errors.SwiftCAMIOError,
                3: errors.FileFormatError, 4: errors.WeightsError,
                5: errors.UnsupportedModelError, 6: errors.InputShapeError,
                7: errors.OutOfMemoryError, 8: errors.UnknownLayerError,
                9: errors.BufferSizeError}
    for status, cls in expected.items():
        error = errors.error_for_status(status, "message")
        assert type(error) is cls and error.status == status and str(error) == "message"
    unknown = errors.error_for_status(99, "")
    assert type(unknown) is errors.SwiftCAMError and "99" in str(unknown)


def test_builtin_bases():
    assert issubclass(errors.SwiftCAMIOError, OSError)
    assert issubclass(errors.ModelFileNotFoundError, FileNotFoundError)
    assert issubclass(errors.OutOfMemoryError, MemoryError)
    assert issubclass(errors.UnknownLayerError, KeyError)
    assert issubclass(errors.UnknownLayerError, ValueError)
    assert issubclass(errors.ModelClosedError, ValueError)
    for name in ("InvalidInputError", "WeightsError", "UnsupportedModelError",
                 "FileFormatError"):
        assert issubclass(getattr(errors, name), ValueError)
        assert issubclass(getattr(errors, name), errors.SwiftCAMError)


def test_model_cannot_be_instantiated_directly():
    with pytest.raises(TypeError):
        _native.Model()


def test_wrong_format_rejected(handle):
    logits = np.empty((1, 10), dtype=np.float32)
    with pytest.raises(InvalidInputError, match="float32 buffer.*format 'd'"):
        handle.forward(np.zeros((1, 3, 8, 8)), logits)
    with pytest.raises(InvalidInputError, match="float32"):
        handle.forward(np.zeros((1, 3, 8, 8), dtype=np.int32), logits)


def test_non_contiguous_rejected(handle):
    x = np.zeros((1, 3, 8, 16), dtype=np.float32)[..., ::2]
    with pytest.raises(InvalidInputError, match="C-contiguous"):
        handle.forward(x, np.empty((1, 10), dtype=np.float32))


def test_read_only_output_rejected(handle):
    logits = np.empty((1, 10), dtype=np.float32)
    logits.flags.writeable = False
    with pytest.raises((BufferError, ValueError)):
        handle.forward(np.zeros((1, 3, 8, 8), dtype=np.float32), logits)


def test_output_count_checked(handle):
    with pytest.raises(BufferSizeError, match="expected 20 elements, got 10"):
        handle.forward(np.zeros((2, 3, 8, 8), dtype=np.float32), np.empty(10, np.float32))


def test_rank_checked(handle):
    with pytest.raises(InvalidInputError, match="4-D"):
        handle.forward(np.zeros((3, 8, 8), dtype=np.float32), np.empty(10, np.float32))


def test_non_numpy_buffers_work(handle, basic):
    x = basic.input
    flat = array.array("f", x.ravel().tolist())
    logits = np.empty((2, 10), dtype=np.float32)
    view = memoryview(flat).cast("B").cast("f", shape=list(x.shape))
    handle.forward(view, logits)
    np.testing.assert_allclose(logits, basic.tensor("logits"), rtol=0, atol=1e-5)


def test_bad_layer_indices_do_not_crash(handle, basic):
    with pytest.raises(UnknownLayerError):
        handle.trace(basic.input, [-2])  # -1 is LAYER_INPUT
    with pytest.raises(UnknownLayerError):
        handle.trace(basic.input, [1000])
    with pytest.raises((UnknownLayerError, InvalidInputError)):
        handle.trace(basic.input, [3, 3])
    with pytest.raises((UnknownLayerError, InvalidInputError)):
        handle.layer_shape(-5, (1, 3, 8, 8))


def test_trace_argument_checks(handle, basic):
    trace = handle.trace(basic.input, [12, 10])
    try:
        with pytest.raises(InvalidInputError, match="expected 2 buffers"):
            trace.backward(np.zeros((2, 1, 10), np.float32), 1, [np.empty(1, np.float32)])
        with pytest.raises(BufferSizeError, match="seeds"):
            trace.backward(np.zeros((2, 2, 10), np.float32), 1, [])
        with pytest.raises(BufferSizeError):
            trace.activation(0, np.empty(7, np.float32))
        with pytest.raises((InvalidInputError, UnknownLayerError)):
            trace.activation(5, np.empty(7, np.float32))
        heat = np.empty((2, 1, 67, 45), np.float32)
        seeds = np.zeros((2, 1, 10), np.float32)
        with pytest.raises(InvalidInputError):
            trace.cam(999, False, 67, 45, seeds, 1, heat, None)
        with pytest.raises(BufferSizeError):
            trace.cam(0, False, 67, 46, seeds, 1, heat, None)
        with pytest.raises((InvalidInputError, BufferSizeError)):
            trace.cam(0, False, -1, 45, seeds, 1, heat, None)
        trace.cam(0, False, 67, 45, seeds, 1, heat, None)  # all zero seeds are fine
    finally:
        trace.close()


def test_set_num_threads_rejects_non_positive():
    with pytest.raises(InvalidInputError):
        _native.set_num_threads(0)


def _seeds(basic):
    seeds = np.zeros((2, 1, 10), np.float32)
    seeds[[0, 1], 0, basic.meta["gradient_targets"]] = 1
    return seeds


def test_input_layer_gradients(handle, basic):
    trace = handle.trace(basic.input, [_native.LAYER_INPUT, 12])
    try:
        copy = np.empty_like(basic.input)
        trace.activation(0, copy)
        np.testing.assert_array_equal(copy, basic.input)
        gradients = [np.empty_like(basic.input),
                     np.empty(basic.tensor("gradient/layer4").shape, np.float32)]
        trace.backward(_seeds(basic), 1, gradients)
        expected = basic.tensor("gradient/input")
        assert np.abs(gradients[0] - expected).max() <= 1e-5 * np.abs(expected).max()
        trace.guided_backward(_seeds(basic), 1, gradients)
        expected = basic.tensor("guided/input")
        assert np.abs(gradients[0] - expected).max() <= 1e-5 * np.abs(expected).max()
    finally:
        trace.close()


@pytest.mark.parametrize("layer", ["layer3", "layer4.0", "avgpool"])
def test_forward_from_a_layer(basic_model, basic, layer):
    index = basic_model.layer_names.index(layer)
    logits = np.empty((2, 10), np.float32)
    basic_model._handle.forward_from(index, basic.tensor(f"activation/{layer}"), logits)
    expected = basic.tensor("logits")
    assert np.abs(logits - expected).max() <= 1e-5 * np.abs(expected).max()
    with pytest.raises(BufferSizeError):
        basic_model._handle.forward_from(index, basic.tensor(f"activation/{layer}"),
                                         np.empty(3, np.float32))
