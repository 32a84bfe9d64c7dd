"""Tests of swiftcam.explanation: explain() and the Explanation it returns.

They use the ``basic`` fixture model (10 classes, no labels) from Tests/Fixtures.
"""

import io
import json
import warnings

import numpy as np
import pytest
from PIL import Image

import swiftcam
from swiftcam.explanation import (METHODS, Explanation, cam_class, explain, make_cam,
                                  method_name, method_names, montage, read_labels)
from swiftcam.utils.image import preprocess_image, show_cam_on_image


@pytest.fixture(scope="module")
def image():
    rng = np.random.default_rng(11)
    return rng.random((67, 45, 3), dtype=np.float32)


def _decode_png(data):
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    picture = Image.open(io.BytesIO(data))
    picture.load()
    return picture


# -- method names -----------------------------------------------------------------------------

@pytest.mark.parametrize("name, cls", [
    ("gradcam", swiftcam.GradCAM), ("GradCAM", swiftcam.GradCAM),
    ("HiResCAM", swiftcam.HiResCAM), ("gradcamelementwise", swiftcam.GradCAMElementWise),
    ("gradcam++", swiftcam.GradCAMPlusPlus), ("GradCAMPlusPlus", swiftcam.GradCAMPlusPlus),
    ("grad-cam++", swiftcam.GradCAMPlusPlus), ("XGradCAM", swiftcam.XGradCAM),
    ("layercam", swiftcam.LayerCAM), ("EigenCAM", swiftcam.EigenCAM),
    ("eigen_grad_cam", swiftcam.EigenGradCAM), (swiftcam.HiResCAM, swiftcam.HiResCAM),
    ("ScoreCAM", swiftcam.ScoreCAM), ("ablation-cam", swiftcam.AblationCAM),
    ("FullGrad", swiftcam.FullGrad), ("full_grad", swiftcam.FullGrad),
    (swiftcam.FullGrad, swiftcam.FullGrad)])
def test_cam_class_maps_names_case_insensitively(name, cls):
    assert cam_class(name) is cls


def test_cam_class_rejects_unknown_names():
    with pytest.raises(swiftcam.InvalidInputError,
                       match="unknown CAM method 'nosuchcam'; choose one of: gradcam, ") as info:
        cam_class("nosuchcam")
    for name in ("scorecam", "ablationcam", "fullgrad"):
        assert name in str(info.value)
    assert "gradcamplusplus" not in str(info.value)
    assert len(set(METHODS.values())) == 11


def test_every_exported_cam_class_has_a_method_name():
    exported = {getattr(swiftcam, name) for name in swiftcam.__all__}
    cams = {c for c in exported if isinstance(c, type) and issubclass(c, swiftcam.BaseCAM)}
    assert cams - {swiftcam.BaseCAM} == set(METHODS.values())
    assert [method_name(name) for name in method_names()] == list(method_names())
    assert method_name("Grad_CAM_Plus_Plus") == "gradcam++"


# -- explain ----------------------------------------------------------------------------------

def test_explain_top_k_matches_the_cam_api(basic_model, image):
    result = explain(basic_model, image, method="gradcam", layer="layer4", top_k=3)
    batch = preprocess_image(image)
    logits = basic_model(batch)[0]
    order = np.argsort(-logits.astype(np.float64))[:3]
    assert result.classes == tuple(int(c) for c in order)
    probabilities = np.exp(logits - logits.max()) / np.exp(logits - logits.max()).sum()
    np.testing.assert_allclose(result.scores, probabilities[order], rtol=1e-5)
    assert result.heatmaps.shape == (3, 67, 45)
    cam = swiftcam.GradCAM(basic_model, target_layers=["layer4"])
    for k, c in enumerate(order):
        expected = cam(batch, targets=[swiftcam.ClassifierOutputTarget(int(c))])[0]
        np.testing.assert_allclose(result.heatmaps[k], expected, atol=1e-5)
    assert result.method == "GradCAM" and result.layers == ("layer4",)
    assert result.labels is None and result.class_names[0] == f"class {order[0]}"


def test_explain_accepts_paths_arrays_and_pil_images(basic, basic_model, image, tmp_path):
    pixels = np.uint8(np.rint(image * 255))
    path = tmp_path / "picture.png"
    Image.fromarray(pixels).save(path)
    from_path = explain(basic_model, path, top_k=2)
    from_uint8 = explain(basic_model, pixels, top_k=2)
    from_pil = explain(basic_model, Image.fromarray(pixels), top_k=2)
    from_file_weights = explain(basic.weights_path, str(path), top_k=2)
    for other in (from_uint8, from_pil, from_file_weights):
        assert other.classes == from_path.classes
        np.testing.assert_allclose(other.heatmaps, from_path.heatmaps, atol=1e-6)
    assert from_path.source == str(path) and from_uint8.source is None


def test_explain_resizes_and_uses_labels(basic_model, image, tmp_path):
    labels = [f"thing {i}" for i in range(10)]
    result = explain(basic_model, image, top_k=2, size=(40, 30), labels=labels)
    assert result.image.shape == (30, 40, 3) and result.heatmaps.shape == (2, 30, 40)
    assert result.labels == tuple(labels[c] for c in result.classes)
    (tmp_path / "labels.json").write_text(json.dumps({"3": "three"}))
    named = explain(basic_model, image, classes=[3, 7], labels=tmp_path / "labels.json")
    assert named.classes == (3, 7) and named.labels == ("three", "class 7")


def test_explain_given_classes_equals_single_targets(basic_model, image):
    result = explain(basic_model, image, method="xgradcam", classes=[4, 1])
    cam = swiftcam.XGradCAM(basic_model, target_layers=["layer4"])
    batch = preprocess_image(image)
    for k, c in enumerate((4, 1)):
        expected = cam(batch, targets=[swiftcam.ClassifierOutputTarget(c)])[0]
        np.testing.assert_allclose(result.heatmaps[k], expected, atol=1e-5)


@pytest.mark.parametrize("method", ["hirescam", "gradcamelementwise", "gradcam++", "layercam",
                                    "eigencam", "eigengradcam"])
def test_explain_runs_every_method(basic_model, image, method):
    result = explain(basic_model, image, method=method, layer="layer3", top_k=2)
    assert result.heatmaps.shape == (2, 67, 45)
    assert 0 <= result.heatmaps.min() and result.heatmaps.max() <= 1
    assert result.method == cam_class(method).__name__ and result.layers == ("layer3",)


@pytest.mark.parametrize("method, cls", [("scorecam", swiftcam.ScoreCAM),
                                         ("ablationcam", swiftcam.AblationCAM)])
def test_explain_runs_the_perturbation_methods(basic_model, image, method, cls):
    result = explain(basic_model, image, method=method, layer="layer3", top_k=2)
    assert result.heatmaps.shape == (2, 67, 45) and result.heatmaps.dtype == np.float32
    assert 0 <= result.heatmaps.min() and result.heatmaps.max() <= 1
    assert result.heatmaps.reshape(2, -1).max(axis=1).min() > 0.99  # min-max normalised
    assert result.method == cls.__name__ and result.layers == ("layer3",)
    expected = cls(basic_model, target_layers=["layer3"])(
        preprocess_image(image), targets=[swiftcam.ClassifierOutputTarget(result.classes[1])])
    np.testing.assert_allclose(result.heatmaps[1], expected[0], atol=1e-5)


def test_explain_fullgrad_ignores_the_layer_silently(basic_model, image):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # FullGrad(model, target_layers=[...]) would warn
        result = explain(basic_model, image, method="fullgrad", layer="layer9", top_k=3)
        default = explain(basic_model, image, method="FullGrad", top_k=3)
        given = explain(basic_model, image, method="fullgrad", classes=[2, 5])
        assert make_cam("fullgrad", basic_model, ["layer1", "layer2"]).target_layers == ()
    assert result.heatmaps.shape == (3, 67, 45) and result.heatmaps.dtype == np.float32
    assert 0 <= result.heatmaps.min() and result.heatmaps.max() <= 1
    assert result.heatmaps.reshape(3, -1).max(axis=1).min() > 0.99
    np.testing.assert_array_equal(result.heatmaps, default.heatmaps)
    assert result.method == "FullGrad" and result.layers == ()
    assert result.to_dict()["layers"] == [] and "FullGrad of a 45x67 image" in repr(result)
    assert result.to_pil().size == default.to_pil().size
    cam = swiftcam.FullGrad(basic_model)
    for k, c in enumerate(result.classes):
        expected = cam(preprocess_image(image), targets=[swiftcam.ClassifierOutputTarget(c)])
        np.testing.assert_allclose(result.heatmaps[k], expected[0], atol=1e-5)
    assert given.classes == (2, 5) and given.heatmaps.shape == (2, 67, 45)
    np.testing.assert_allclose(
        given.heatmaps[1],
        cam(preprocess_image(image), targets=[swiftcam.ClassifierOutputTarget(5)])[0], atol=1e-5)


def test_explain_rejects_bad_images(basic_model):
    with pytest.raises(ValueError, match="channels-last"):
        explain(basic_model, np.zeros((3, 20, 20), dtype=np.float32))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        explain(basic_model, np.full((20, 20, 3), 2.0, dtype=np.float32))
    with pytest.raises(swiftcam.UnknownLayerError):
        explain(basic_model, np.zeros((20, 20, 3), dtype=np.float32), layer="layer9")


# -- the Explanation object -------------------------------------------------------------------

def test_overlay_is_rgb_show_cam_on_image(basic_model, image):
    result = explain(basic_model, image, top_k=2)
    overlay = result.overlay(1)
    assert overlay.dtype == np.uint8 and overlay.shape == (67, 45, 3)
    np.testing.assert_array_equal(
        overlay, show_cam_on_image(image, result.heatmaps[1], use_rgb=True))


def test_repr_png_is_a_valid_png_of_the_panel(basic_model, image):
    result = explain(basic_model, image, top_k=3, labels=[f"c{i}" for i in range(10)])
    picture = _decode_png(result._repr_png_())
    assert picture.mode == "RGB"
    assert picture.size == result.to_pil().size
    # Four tiles (input + 3 overlays) of the 45x67 image enlarged to a 128-pixel short side,
    # with margins, a title line and two caption lines.
    assert picture.width > 4 * 128 and picture.height > round(67 * 128 / 45)
    pixels = np.asarray(picture)
    assert (pixels == 255).all(axis=2).any()  # white margins
    assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 100  # the overlays are there
    one = explain(basic_model, image, top_k=1)
    assert _decode_png(one._repr_png_()).width < picture.width


def test_save_writes_the_panel_or_one_overlay(basic_model, image, tmp_path):
    result = explain(basic_model, image, top_k=2)
    assert result.save(tmp_path / "panel.png") == str(tmp_path / "panel.png")
    with Image.open(tmp_path / "panel.png") as panel:
        assert panel.format == "PNG" and panel.size == result.to_pil().size
    result.save(tmp_path / "overlay.png", k=1)
    with Image.open(tmp_path / "overlay.png") as overlay:
        np.testing.assert_array_equal(np.asarray(overlay), result.overlay(1))


def test_to_dict_and_repr(basic_model, image):
    result = explain(basic_model, image, top_k=2, labels=[str(i) for i in range(10)])
    summary = result.to_dict()
    assert summary["classes"] == list(result.classes)
    assert summary["labels"] == [str(c) for c in result.classes]
    assert json.loads(json.dumps(summary)) == summary
    assert "GradCAM @ layer4" in repr(result) and "45x67" in repr(result)


def test_explanation_validates_its_fields(image):
    heatmaps = np.zeros((2, 67, 45), dtype=np.float32)
    Explanation(image, heatmaps, [1, 2], [0.5, 0.25])
    with pytest.raises(ValueError, match="scores: expected 2"):
        Explanation(image, heatmaps, [1, 2], [0.5])
    with pytest.raises(ValueError, match="heatmaps"):
        Explanation(image, heatmaps[:, :10], [1, 2], [0.5, 0.25])
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        Explanation(image * 255, heatmaps, [1, 2], [0.5, 0.25])


def test_montage_and_read_labels(tmp_path):
    tiles = [np.zeros((300, 600, 3), dtype=np.uint8)] * 2
    picture = montage(tiles, ["a", ("b", "c")], title="t")
    assert picture.size[0] < 2 * 600  # large tiles are reduced
    (tmp_path / "l.json").write_text('["x", "y"]')
    assert read_labels(tmp_path / "l.json") == ["x", "y"]
    assert read_labels({1: "one"}) == {1: "one"}
    with pytest.raises(TypeError):
        read_labels(3)
