"""CAMs against the pytorch-grad-cam fixtures (stage 2), and the CAM API."""

import numpy as np
import pytest

import swiftcam
from conftest import entry_targets, get_case, get_model, meta_entries
from swiftcam.errors import InvalidInputError, UnknownLayerError

# The tolerance: 1e-5 absolute on maps in [0, 1], or twice the reference's own float32
# error where that is larger. The reference moves by up to 5.5e-6 between its own float32 and
# float64 runs (meta.json float64_vs_float32.cam_abs_max), so it is only known to that distance
# from the exact map, and a float32 engine summing in another order is as far on its own side
# (seen: bottleneck's GradCAM++ eigen_smooth map, 1.0e-5 from the reference on a first blocking of
# swiftcam's GEMM kernel; tools/cam_against_float64.py prints both engines' distances from float64).
CAM_TOLERANCE = 1e-5


def cam_tolerance(case):
    """CAM_TOLERANCE, or twice the fixture's measured reference float32 error if larger."""
    return max(CAM_TOLERANCE, 2 * case.meta["float64_vs_float32"]["cam_abs_max"])
METHODS = ("GradCAM", "HiResCAM", "GradCAMElementWise", "GradCAMPlusPlus", "XGradCAM",
           "LayerCAM", "EigenCAM", "EigenGradCAM")
_targets = entry_targets


def _cam_entries():
    return meta_entries("cams", "cam/")


@pytest.mark.parametrize("case_name, entry", list(_cam_entries()))
def test_cam_matches_reference(case_name, entry):
    case = get_case(case_name)
    model = get_model(case_name)
    method = getattr(swiftcam, entry["method"])
    with method(model=model, target_layers=entry["target_layers"]) as cam:
        heatmaps = cam(input_tensor=case.input, targets=_targets(entry),
                       eigen_smooth=entry["eigen_smooth"])
    assert heatmaps.dtype == np.float32
    expected = case.tensor(entry["key"])
    assert heatmaps.shape == expected.shape
    # SVD-based maps: per image, the reference output or one of its sign-flipped variants.
    candidates = [expected] + [case.tensor(key) for key in entry.get("sign_variants", {}).values()]
    for image in range(heatmaps.shape[0]):
        error = min(np.abs(heatmaps[image] - c[image]).max() for c in candidates)
        assert error <= cam_tolerance(case), f"image {image}: max abs error {error:.3g}"
    for image in entry["all_zero_images"]:
        assert not np.any(heatmaps[image])
    # The trace's logits, as pytorch-grad-cam's cam.outputs (not necessarily bitwise equal
    # to a plain forward pass, which may choose other kernels).
    np.testing.assert_allclose(cam.outputs, case.tensor("logits"), rtol=0,
                               atol=1e-5 * case.meta["max_abs_logit"])


def _numpy_raw_map(method, activation, gradient):
    """Reference per-layer maps before ReLU/normalisation, from the fixture tensors."""
    a = activation.astype(np.float64)
    g = gradient.astype(np.float64)
    if method == "GradCAM":
        return np.einsum("nc,nchw->nhw", g.mean(axis=(2, 3)), a)
    if method == "HiResCAM":
        return (g * a).sum(axis=1)
    if method == "GradCAMElementWise":
        return np.maximum(g * a, 0).sum(axis=1)
    if method == "XGradCAM":
        weights = (g * a).sum(axis=(2, 3)) / (a.sum(axis=(2, 3)) + 1e-7)
        return np.einsum("nc,nchw->nhw", weights, a)
    if method == "LayerCAM":
        return (np.maximum(g, 0) * a).sum(axis=1)
    if method == "GradCAMPlusPlus":
        g2, g3 = g ** 2, g ** 3
        sums = a.sum(axis=(2, 3), keepdims=True)
        alpha = g2 / (2 * g2 + sums * g3 + 1e-6)
        alpha = np.where(g != 0, alpha, 0)
        weights = (np.maximum(g, 0) * alpha).sum(axis=(2, 3))
        return np.einsum("nc,nchw->nhw", weights, a)
    raise ValueError(method)


@pytest.mark.parametrize("method", ["GradCAM", "HiResCAM", "GradCAMElementWise", "XGradCAM",
                                    "LayerCAM", "GradCAMPlusPlus"])
@pytest.mark.parametrize("layer", ["layer4", "layer3", "layer2.0"])
def test_raw_maps_match_fixture_tensors(basic, basic_model, method, layer):
    targets = [swiftcam.ClassifierOutputTarget(c) for c in basic.meta["gradient_targets"]]
    result = getattr(swiftcam, method)(basic_model, [layer]).explain(basic.input, targets)
    expected = _numpy_raw_map(method, basic.tensor(f"activation/{layer}"),
                              basic.tensor(f"gradient/{layer}"))
    raw = result.raw_maps[layer]
    assert raw.shape == expected.shape
    scale = max(np.abs(expected).max(), 1e-12)
    # Measured: at most 1.3e-6 relative (float32 engine vs float64 NumPy on float32 tensors).
    assert np.abs(raw - expected).max() / scale <= 1e-5


def test_explain_result(basic, basic_model):
    targets = [swiftcam.ClassifierOutputTarget(1), swiftcam.ClassifierOutputSoftmaxTarget(6)]
    cam = swiftcam.GradCAM(basic_model, ["layer3", "layer4"])
    result = cam.explain(basic.input, targets)
    logits = basic.tensor("logits")
    assert isinstance(result, swiftcam.CAMResult)
    np.testing.assert_array_equal(result.heatmaps, cam(basic.input, targets))
    np.testing.assert_array_equal(result.logits, cam.outputs)
    np.testing.assert_allclose(result.logits, logits, rtol=0, atol=1e-5)
    np.testing.assert_array_equal(result.classes, [1, 6])
    p = np.exp(logits[1] - logits[1].max())
    p /= p.sum()
    np.testing.assert_allclose(result.scores, [logits[0, 1], p[6]], rtol=1e-4)
    assert list(result.raw_maps) == ["layer3", "layer4"]
    assert result.raw_maps["layer4"].shape == (2, 3, 2)
    assert result.method == "GradCAM" and result.target_layers == ("layer3", "layer4")
    assert "GradCAM" in repr(result)


def test_argmax_when_no_targets(basic, basic_model):
    cam = swiftcam.GradCAM(basic_model, "layer4")
    result = cam.explain(basic.input)
    np.testing.assert_array_equal(result.classes, basic.tensor("logits").argmax(axis=1))
    explicit = [swiftcam.ClassifierOutputTarget(c) for c in result.classes]
    np.testing.assert_array_equal(cam(basic.input, explicit), result.heatmaps)


def test_int_targets_are_class_targets(basic, basic_model):
    cam = swiftcam.HiResCAM(basic_model, "layer3")
    np.testing.assert_array_equal(
        cam(basic.input, [1, 6]),
        cam(basic.input, [swiftcam.ClassifierOutputTarget(1),
                          swiftcam.ClassifierOutputTarget(6)]))


def test_linear_target_is_difference_of_raw_maps(basic, basic_model):
    """Raw maps are linear in the seed for GradCAM: map(a - b) = map(a) - map(b)."""
    cam = swiftcam.GradCAM(basic_model, "layer3")
    x = basic.input
    a = cam.explain(x, [3, 3]).raw_maps["layer3"]
    b = cam.explain(x, [5, 5]).raw_maps["layer3"]
    target = swiftcam.ClassifierOutputLinearTarget({3: 1.0, 5: -1.0})
    difference = cam.explain(x, [target, target])
    np.testing.assert_allclose(difference.raw_maps["layer3"], a - b, atol=1e-5)
    np.testing.assert_array_equal(difference.classes, [-1, -1])


@pytest.mark.parametrize("method", METHODS)
def test_top_k_equals_single_class_maps(case, case_model, method):
    k = min(3, case.meta["num_classes"])
    cam = getattr(swiftcam, method)(case_model, ["layer3", "layer4"])
    heatmaps, classes = cam.top_k(case.input, k=k)
    n = case.input.shape[0]
    assert heatmaps.shape == (n, k) + case.input.shape[2:]
    assert classes.shape == (n, k)
    logits = case.tensor("logits")
    np.testing.assert_array_equal(classes, np.argsort(-logits, axis=1, kind="stable")[:, :k])
    for j in range(k):
        single = cam(case.input, [swiftcam.ClassifierOutputTarget(c) for c in classes[:, j]])
        np.testing.assert_allclose(heatmaps[:, j], single, rtol=0, atol=1e-6)


def test_top_k_validates_k(basic_model, basic):
    cam = swiftcam.GradCAM(basic_model, "layer4")
    with pytest.raises(InvalidInputError, match="between 1 and 10"):
        cam.top_k(basic.input, k=11)
    with pytest.raises(InvalidInputError):
        cam.top_k(basic.input, k=0)
    with pytest.raises(TypeError):
        cam.top_k(basic.input, k=2.0)


def test_output_size_is_input_size(basic_model):
    x = np.random.default_rng(3).standard_normal((1, 3, 50, 33), dtype=np.float32)
    assert swiftcam.GradCAM(basic_model, "layer4")(x).shape == (1, 50, 33)


def test_heatmaps_are_normalised(basic, basic_model):
    heatmaps = swiftcam.GradCAM(basic_model, "layer3")(basic.input, [1, 6])
    assert heatmaps.min() >= 0 and heatmaps.max() <= 1
    assert np.allclose(heatmaps.reshape(2, -1).max(axis=1), 1, atol=1e-6)


# -- argument errors ----------------------------------------------------------------------------


def test_targets_length_mismatch_raises(basic, basic_model):
    cam = swiftcam.GradCAM(basic_model, "layer4")
    with pytest.raises(InvalidInputError, match=r"1 target\(s\) for a batch of 2"):
        cam(basic.input, [swiftcam.ClassifierOutputTarget(1)])
    with pytest.raises(InvalidInputError, match=r"3 target\(s\) for a batch of 2"):
        cam(basic.input, [1, 2, 3])


def test_single_target_not_in_a_list(basic, basic_model):
    cam = swiftcam.GradCAM(basic_model, "layer4")
    with pytest.raises(TypeError, match="one target per image"):
        cam(basic.input, swiftcam.ClassifierOutputTarget(1))


def test_class_out_of_range_raises(basic, basic_model):
    cam = swiftcam.GradCAM(basic_model, "layer4")
    with pytest.raises(InvalidInputError, match=r"targets\[1\]: class index 10 is out of range"):
        cam(basic.input, [1, 10])


def test_target_without_gradient_raises(basic, basic_model):
    cam = swiftcam.GradCAM(basic_model, "layer4")
    with pytest.raises(TypeError, match="no gradient"):
        cam(basic.input, [lambda output: output[1]] * 2)


def test_unknown_target_layer_lists_valid_names(basic_model):
    with pytest.raises(UnknownLayerError, match=r"target_layers: unknown layer 'layer5'.*"
                                                r"layer4\.0, layer4, avgpool"):
        swiftcam.GradCAM(basic_model, ["layer5"])


def test_target_layers_validation(basic_model):
    with pytest.raises(InvalidInputError, match="at least one"):
        swiftcam.GradCAM(basic_model, [])
    with pytest.raises(InvalidInputError, match="twice"):
        swiftcam.GradCAM(basic_model, ["layer4", "layer4"])
    with pytest.raises(TypeError, match="torch modules"):
        swiftcam.GradCAM(basic_model, [object()])


def test_model_must_be_a_swiftcam_model():
    with pytest.raises(TypeError, match="expected a swiftcam.Model"):
        swiftcam.GradCAM(object(), ["layer4"])


def test_base_cam_is_abstract(basic_model):
    with pytest.raises(TypeError, match="abstract"):
        swiftcam.BaseCAM(basic_model, ["layer4"])


def test_aug_smooth_keeps_the_unaugmented_scores(basic, basic_model):
    cam = swiftcam.GradCAM(basic_model, "layer4")
    plain = cam.explain(basic.input)
    smooth = cam.explain(basic.input, aug_smooth=True)
    np.testing.assert_array_equal(smooth.logits, plain.logits)
    assert smooth.heatmaps.shape == plain.heatmaps.shape
    assert not np.array_equal(smooth.heatmaps, plain.heatmaps)


def test_reshape_transform_not_supported(basic_model):
    with pytest.raises(NotImplementedError, match="reshape_transform"):
        swiftcam.GradCAM(basic_model, ["layer4"], reshape_transform=lambda x: x)


def test_all_methods_share_the_base_class():
    for name in METHODS:
        assert issubclass(getattr(swiftcam, name), swiftcam.BaseCAM)


def test_input_errors_name_the_argument(basic_model):
    with pytest.raises(InvalidInputError, match=r"input_tensor: expected shape \(N, 3, H, W\)"):
        swiftcam.GradCAM(basic_model, "layer4")(np.zeros((1, 1, 8, 8), np.float32))


def test_cam_input_is_not_copied(basic, basic_model):
    x = np.ascontiguousarray(basic.input)
    swiftcam.GradCAM(basic_model, "layer4")(x)
    assert basic_model._last_input_address() == x.ctypes.data
