"""swiftcam.FullGrad against pytorch-grad-cam 1.5.7's FullGrad (fixtures, and live in
test_live_torch.py).

Fixture keys ``fullgrad/<id>`` (meta.json ``fullgrad_cams``): plain (the case's classes, argmax,
softmax), eigen_smooth (up to the SVD sign: ``sign_variants``) and aug_smooth. Tolerance as for
the other CAMs: max(1e-5, 3 x the reference's own float32-vs-float64 difference for that map),
absolute; the recorded differences are at most 1e-6.
"""

import warnings

import numpy as np
import pytest

import swiftcam
from conftest import entry_targets, get_case, get_model, meta_entries
from swiftcam import _native
from swiftcam.errors import BufferSizeError, InvalidInputError, ModelClosedError
from swiftcam.utils.image import scale_cam_image


@pytest.mark.parametrize("case_name, entry", list(meta_entries("fullgrad_cams", "fullgrad/")))
def test_fullgrad_matches_reference(case_name, entry):
    if entry is None:
        pytest.fail("meta.json has no fullgrad_cams: regenerate the fixtures")
    case, model = get_case(case_name), get_model(case_name)
    heatmaps = swiftcam.FullGrad(model)(case.input, entry_targets(entry),
                                        aug_smooth=entry["aug_smooth"],
                                        eigen_smooth=entry["eigen_smooth"])
    expected = case.tensor(entry["key"])
    assert heatmaps.shape == expected.shape and heatmaps.dtype == np.float32
    candidates = [expected] + [case.tensor(k) for k in entry.get("sign_variants", {}).values()]
    limit = max(1e-5, 3 * entry["float64_vs_float32"])
    for image in range(heatmaps.shape[0]):
        error = min(np.abs(heatmaps[image] - c[image]).max() for c in candidates)
        assert error <= limit, f"image {image}: max abs error {error:.3g} > {limit:.3g}"


@pytest.mark.parametrize("eigen_smooth", [False, True])
def test_top_k_equals_single_class_maps(basic, basic_model, eigen_smooth):
    cam = swiftcam.FullGrad(basic_model)
    heatmaps, classes = cam.top_k(basic.input, k=3, eigen_smooth=eigen_smooth)
    assert heatmaps.shape == (2, 3) + basic.input.shape[2:] and classes.shape == (2, 3)
    for image in range(2):
        for j in range(3):
            single = cam(basic.input[image:image + 1],
                         [swiftcam.ClassifierOutputTarget(int(classes[image, j]))],
                         eigen_smooth=eigen_smooth)
            np.testing.assert_allclose(heatmaps[image, j], single[0], rtol=0, atol=1e-6)


def test_explain_result(basic, basic_model):
    targets = basic.meta["gradient_targets"]
    result = swiftcam.FullGrad(basic_model).explain(basic.input, targets)
    assert result.method == "FullGrad" and result.target_layers == ()
    assert list(result.raw_maps) == ["fullgrad"]
    raw = result.raw_maps["fullgrad"]
    assert raw.shape == result.heatmaps.shape == (2,) + basic.input.shape[2:]
    np.testing.assert_array_equal(result.heatmaps, scale_cam_image(raw))
    assert result.classes.tolist() == targets
    np.testing.assert_allclose(result.logits, basic.tensor("logits"), rtol=0,
                               atol=1e-5 * basic.meta["max_abs_logit"])


def test_target_layers_are_ignored_with_a_warning(basic, basic_model):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        plain = swiftcam.FullGrad(basic_model)(basic.input)
        swiftcam.FullGrad(basic_model, target_layers=[])
    with pytest.warns(UserWarning, match="target_layers is ignored in FullGrad"):
        cam = swiftcam.FullGrad(basic_model, target_layers=["layer4"])
    np.testing.assert_array_equal(cam(basic.input), plain)
    assert repr(cam).startswith("FullGrad(")


def test_model_checks(basic_model):
    with pytest.raises(TypeError, match="expected a swiftcam.Model"):
        swiftcam.FullGrad(object())
    with pytest.raises(NotImplementedError):
        swiftcam.FullGrad(basic_model, reshape_transform=lambda x: x)


def test_closed_model(basic):
    model = swiftcam.load(basic.weights)
    cam = swiftcam.FullGrad(model)
    model.close()
    with pytest.raises(ModelClosedError):
        cam(basic.input)
    with pytest.raises(ModelClosedError):
        swiftcam.FullGrad(model)


def test_non_finite_input_refused(basic, basic_model):
    x = basic.input.copy()
    x[0, 2, 5, 6] = np.inf
    with pytest.raises(InvalidInputError, match="expected finite values"):
        swiftcam.FullGrad(basic_model)(x)


def test_native_checks(basic, basic_model):
    handle = basic_model._handle
    terms = 3 + handle.bias_layer_count
    assert handle.bias_layer_count == 14
    seeds = np.zeros((2, 1, 10), np.float32)
    seeds[:, 0, 1] = 1
    n, _, h, w = basic.input.shape
    trace = handle.trace(basic.input, [basic_model.layer_names.index("layer4")])
    try:
        with pytest.raises(InvalidInputError, match="SWIFTCAM_LAYER_INPUT"):
            trace.fullgrad(seeds, 1, True, h, w, np.empty((n, 1, h, w), np.float32))
    finally:
        trace.close()
    trace = handle.trace(basic.input, [_native.LAYER_INPUT])
    try:
        with pytest.raises(BufferSizeError):
            trace.fullgrad(seeds, 1, False, h, w, np.empty((n, 1, h, w), np.float32))
        with pytest.raises(InvalidInputError):
            trace.fullgrad(seeds, 1, True, 0, w, np.empty(0, np.float32))
        per_term = np.empty((n, 1, terms, h, w), np.float32)
        summed = np.empty((n, 1, h, w), np.float32)
        trace.fullgrad(seeds, 1, False, h, w, per_term)
        trace.fullgrad(seeds, 1, True, h, w, summed)
    finally:
        trace.close()
    # Input terms and per-channel-normalised bias terms: each input term is in [0, 1].
    assert per_term[:, :, :3].min() >= 0 and per_term[:, :, :3].max() <= 1
    np.testing.assert_allclose(per_term.sum(axis=2), summed, rtol=1e-5, atol=0)
