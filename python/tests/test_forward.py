"""Forward pass and model description against the reference fixtures (stage 1)."""

import numpy as np

import swiftcam
from conftest import get_model, max_relative_error

# The tolerance: 1e-5 x max |logit| (the reference's own float32/float64 noise is
# below 4e-7 on every case).
LOGIT_TOLERANCE = 1e-5
# Per layer, 1e-5 x that layer's max |activation| (reference noise below 7e-7).
ACTIVATION_TOLERANCE = 1e-5


def test_logits_match_reference(case, case_model):
    logits = case_model(case.input)
    assert logits.dtype == np.float32
    assert logits.shape == (case.meta["input_shape"][0], case.meta["num_classes"])
    error = np.abs(logits - case.tensor("logits")).max() / case.meta["max_abs_logit"]
    assert error <= LOGIT_TOLERANCE


def test_activations_match_reference_at_every_layer(case, case_model):
    activations = case_model.activations(case.input)
    assert list(activations) == case.meta["layer_names"]
    for name, value in activations.items():
        expected = case.tensor(f"activation/{name}")
        assert value.shape == expected.shape, name
        assert max_relative_error(value, expected) <= ACTIVATION_TOLERANCE, name


def test_activations_of_selected_layers(basic, basic_model):
    activations = basic_model.activations(basic.input, layers=["layer4", "conv1", "layer4"])
    assert list(activations) == ["layer4", "conv1"]
    np.testing.assert_array_equal(activations["layer4"],
                                  basic_model.activations(basic.input, "layer4")["layer4"])
    by_index = basic_model.activations(basic.input, layers=0)
    np.testing.assert_array_equal(by_index["conv1"], activations["conv1"])


def test_gradients_match_reference_at_every_layer(case, case_model):
    gradients = case_model.gradients(case.input, case.meta["gradient_targets"])
    assert list(gradients) == case.meta["layer_names"]
    for name, value in gradients.items():
        expected = case.tensor(f"gradient/{name}")
        assert max_relative_error(value, expected) <= ACTIVATION_TOLERANCE, name


def test_description_matches_fixture(case, case_model):
    meta = case.meta
    assert case_model.layer_names == tuple(meta["layer_names"])
    assert case_model.num_classes == meta["num_classes"]
    assert case_model.input_channels == 3
    # Reduced-width models are not a layout torchvision names.
    assert case_model.arch == "resnet"
    config = case_model.config
    for key in ("block", "layers", "widths", "groups", "width_per_group", "num_classes",
                "stem_width"):
        assert key in config, key
    assert config["block"] == meta["block"]
    assert list(config["layers"]) == meta["layers"]
    assert config["groups"] == meta["groups"]
    assert config["width_per_group"] == meta["width_per_group"]
    assert config["num_classes"] == meta["num_classes"]
    assert config["stem_width"] == 64 // meta["width_divisor"]


def test_layer_shape_matches_activations(basic, basic_model):
    shape = basic.input.shape
    for name in basic_model.layer_names:
        assert basic_model.layer_shape(name, shape) == basic.tensor(f"activation/{name}").shape


def test_repr_is_helpful(basic_model):
    text = repr(basic_model)
    assert "swiftcam.Model" in text and "10 classes" in text and "basic" in text


def test_input_is_not_copied(basic):
    model = get_model("basic")
    x = np.ascontiguousarray(basic.input, dtype=np.float32)
    model(x)
    assert model._last_input_address() == x.ctypes.data


def test_read_only_input_is_not_copied(basic, basic_model):
    x = basic.input.copy()
    x.flags.writeable = False
    logits = basic_model(x)
    assert basic_model._last_input_address() == x.ctypes.data
    np.testing.assert_array_equal(logits, basic_model(basic.input))


def test_other_inputs_are_converted_once(basic, basic_model):
    reference = basic_model(basic.input)
    x64 = basic.input.astype(np.float64)
    np.testing.assert_array_equal(basic_model(x64), reference)
    assert basic_model._last_input_address() != x64.ctypes.data
    fortran = np.asfortranarray(basic.input)
    np.testing.assert_array_equal(basic_model(fortran), reference)
    np.testing.assert_array_equal(basic_model(basic.input.tolist()), reference)


def test_integer_input_is_accepted(basic_model):
    x = np.ones((1, 3, 20, 20), dtype=np.uint8)
    np.testing.assert_array_equal(basic_model(x), basic_model(x.astype(np.float32)))


def test_batch_items_are_independent(basic, basic_model):
    full = basic_model(basic.input)
    for i in range(basic.input.shape[0]):
        np.testing.assert_allclose(basic_model(basic.input[i:i + 1])[0], full[i], rtol=0,
                                   atol=1e-6)


def test_tiny_image_runs(basic_model):
    assert basic_model(np.zeros((1, 3, 1, 1), dtype=np.float32)).shape == (1, 10)


def test_forward_alias(basic, basic_model):
    np.testing.assert_array_equal(basic_model.forward(basic.input), basic_model(basic.input))


def test_load_from_dict_equals_load_from_file(case, case_model):
    from_dict = swiftcam.load(case.weights)
    try:
        np.testing.assert_array_equal(from_dict(case.input), case_model(case.input))
        assert from_dict.layer_names == case_model.layer_names
    finally:
        from_dict.close()


def test_load_from_dict_converts_and_skips(basic, basic_model):
    state = {}
    for key, value in basic.weights.items():
        state[key] = value.astype(np.float64) if key.startswith("layer1") else value
    assert any(k.endswith("num_batches_tracked") for k in state)
    with swiftcam.load(state) as model:
        np.testing.assert_allclose(model(basic.input), basic_model(basic.input), rtol=0,
                                   atol=1e-6)


class _FakeTensor:
    """Quacks like a torch tensor: .detach() and __array__, counting detaches."""

    detached = 0

    def __init__(self, array):
        self._array = array

    def detach(self):
        _FakeTensor.detached += 1
        return self

    def __array__(self, dtype=None, copy=None):
        return self._array if dtype is None else self._array.astype(dtype)


def test_load_from_tensor_like_objects(basic, basic_model):
    _FakeTensor.detached = 0
    state = {k: _FakeTensor(v) for k, v in basic.weights.items()}
    with swiftcam.load(state) as model:
        np.testing.assert_array_equal(model(basic.input), basic_model(basic.input))
    assert _FakeTensor.detached == len(state) - sum(
        k.endswith("num_batches_tracked") for k in state)


def test_load_accepts_path_objects(basic):
    with swiftcam.load(basic.weights_path) as model:  # a pathlib.Path
        assert model.num_classes == 10
    with swiftcam.load(str(basic.weights_path).encode()) as model:
        assert model.num_classes == 10
