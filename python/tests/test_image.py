"""Tests of swiftcam.utils.image and swiftcam.utils.colormaps.

Three kinds of checks:

- against values recorded from OpenCV 5.0 and pytorch-grad-cam 1.5.7 by
  ``tools/visual_reference.py`` into ``data/visual_reference.json`` (always run);
- against OpenCV and pytorch-grad-cam live, on random inputs (skipped where they are not
  installed; run them with ``.venv-torch/bin/python -m pytest python/tests/test_image.py``);
- properties that follow from the definitions.
"""

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import swiftcam
from swiftcam.utils import colormaps
from swiftcam.utils.image import (deprocess_image, load_image, preprocess_image,
                                  resize_bilinear, scale_cam_image, show_cam_on_image)

REFERENCE_FILE = Path(__file__).parent / "data" / "visual_reference.json"
IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]
OPENCV_IDS = {"jet": 2, "turbo": 20, "viridis": 16, "inferno": 14}


@pytest.fixture(scope="module")
def reference():
    if not REFERENCE_FILE.is_file():
        pytest.fail(f"{REFERENCE_FILE} is missing: run .venv-torch/bin/python "
                    "tools/visual_reference.py", pytrace=False)
    return json.loads(REFERENCE_FILE.read_text())


def _f32(values):
    return np.asarray(values, dtype=np.float32)


# -- colormaps --------------------------------------------------------------------------------

# Entries of cv2.applyColorMap(..., COLORMAP_JET) (OpenCV 5.0), converted to RGB and checked by
# hand: the ramps' ends, the half-way rounding (127.5 -> 128, 254.5 -> 254) and entry 159,
# which only the float32 replay of OpenCV's interpolation gets right.
JET_RGB = {0: (0, 0, 128), 31: (0, 0, 252), 32: (0, 0, 255), 33: (0, 4, 255),
           96: (2, 255, 254), 128: (130, 255, 126), 159: (254, 255, 1), 160: (255, 252, 0),
           224: (252, 0, 0), 255: (128, 0, 0)}
# Ends and middle of the published tables (matplotlib's, rounded; OpenCV's are equal).
OTHER_RGB = {
    "viridis": {0: (68, 1, 84), 128: (33, 145, 140), 255: (253, 231, 37)},
    "inferno": {0: (0, 0, 4), 128: (188, 55, 84), 255: (252, 255, 164)},
    "turbo": {0: (48, 18, 59), 128: (164, 252, 60), 255: (122, 4, 3)},
}


@pytest.mark.parametrize("index", sorted(JET_RGB))
def test_jet_entries_verified_against_opencv(index):
    assert tuple(colormaps.get_colormap("jet")[index]) == JET_RGB[index]


def test_jet_equals_the_recorded_opencv_table(reference):
    recorded = np.array(reference["jet_bgr"], dtype=np.uint8)
    assert recorded.shape == (256, 3)
    np.testing.assert_array_equal(colormaps.get_colormap("jet"), recorded[:, ::-1])


@pytest.mark.parametrize("name", sorted(OTHER_RGB))
def test_other_tables_known_entries(name):
    table = colormaps.get_colormap(name)
    for index, rgb in OTHER_RGB[name].items():
        assert tuple(table[index]) == rgb


@pytest.mark.parametrize("name", sorted(OPENCV_IDS))
def test_tables_equal_opencv_live(name):
    cv2 = pytest.importorskip("cv2")
    values = np.arange(256, dtype=np.uint8).reshape(256, 1)
    expected = cv2.applyColorMap(values, OPENCV_IDS[name])[:, 0, ::-1]
    np.testing.assert_array_equal(colormaps.get_colormap(name), expected)


def test_tables_are_read_only_uint8_rgb():
    for name in colormaps.COLORMAPS:
        table = colormaps.get_colormap(name)
        assert table.shape == (256, 3) and table.dtype == np.uint8
        with pytest.raises(ValueError):
            table[0, 0] = 1
    np.testing.assert_array_equal(colormaps.get_colormap("gray"),
                                  np.repeat(np.arange(256)[:, None], 3, axis=1))


def test_colormap_lookup_by_name_id_and_table():
    jet = colormaps.get_colormap("jet")
    assert colormaps.get_colormap("JET") is jet
    assert colormaps.get_colormap(2) is jet  # cv2.COLORMAP_JET
    assert colormaps.get_colormap(20) is colormaps.get_colormap("turbo")
    custom = np.zeros((256, 3), dtype=np.uint8)
    assert colormaps.get_colormap(custom) is custom
    with pytest.raises(ValueError, match="unknown colormap 'hot'"):
        colormaps.get_colormap("hot")
    with pytest.raises(ValueError, match="OpenCV colormap id 11"):
        colormaps.get_colormap(11)
    with pytest.raises(ValueError, match=r"\(256, 3\) uint8"):
        colormaps.get_colormap(np.zeros((255, 3), dtype=np.uint8))


def test_apply_colormap_indexes_the_table():
    values = np.array([[0, 255], [128, 7]], dtype=np.uint8)
    coloured = colormaps.apply_colormap(values, "viridis")
    assert coloured.shape == (2, 2, 3)
    np.testing.assert_array_equal(coloured[1, 0], colormaps.get_colormap("viridis")[128])
    with pytest.raises(TypeError, match="uint8"):
        colormaps.apply_colormap(values.astype(np.float32))


# -- show_cam_on_image ------------------------------------------------------------------------

def test_show_cam_on_image_equals_recorded_reference(reference):
    data = reference["show_cam_on_image"]
    img, mask = _f32(data["img"]), _f32(data["mask"])
    for case in data["cases"]:
        result = show_cam_on_image(img, mask, use_rgb=case["use_rgb"],
                                   colormap=case["colormap"], image_weight=case["image_weight"])
        assert result.dtype == np.uint8
        np.testing.assert_array_equal(result, np.array(case["output"], dtype=np.uint8),
                                      err_msg=str({k: v for k, v in case.items()
                                                   if k != "output"}))


def test_show_cam_on_image_equals_reference_live():
    reference = pytest.importorskip("pytorch_grad_cam.utils.image")
    rng = np.random.default_rng(5)
    for trial in range(12):
        height, width = rng.integers(1, 48, size=2)
        img = rng.random((height, width, 3), dtype=np.float32) * rng.uniform(0.2, 1)
        mask = rng.random((height, width), dtype=np.float32)
        if trial % 3 == 0:
            img, mask = img.astype(np.float64), mask.astype(np.float64)
        for use_rgb in (False, True):
            for weight in (0.0, 0.35, 0.5, 1.0):
                for name, cv2_id in OPENCV_IDS.items():
                    expected = reference.show_cam_on_image(img, mask, use_rgb, cv2_id, weight)
                    np.testing.assert_array_equal(
                        show_cam_on_image(img, mask, use_rgb, name, weight), expected)
                    np.testing.assert_array_equal(
                        show_cam_on_image(img, mask, use_rgb, cv2_id, weight), expected)


def test_show_cam_on_image_follows_its_formula():
    rng = np.random.default_rng(0)
    img = rng.random((5, 7, 3), dtype=np.float32)
    mask = rng.random((5, 7), dtype=np.float32)
    mask[0, 0] = 0.999  # truncates to 254, rounding would give 255
    table = colormaps.get_colormap("jet")
    heat_rgb = table[(255 * mask).astype(np.uint8)].astype(np.float32) / 255
    assert np.array_equal(table[254], (255 * heat_rgb[0, 0]).round().astype(np.uint8))
    for weight in (0.0, 0.3, 1.0):
        cam = (1 - weight) * heat_rgb + weight * img
        expected = np.uint8(255 * (cam / cam.max()))
        np.testing.assert_array_equal(show_cam_on_image(img, mask, True, "jet", weight),
                                      expected)


def test_show_cam_on_image_defaults_to_bgr():
    rng = np.random.default_rng(1)
    img = rng.random((4, 6, 3), dtype=np.float32)
    mask = np.linspace(0, 1, 24, dtype=np.float32).reshape(4, 6)
    rgb = show_cam_on_image(img, mask, use_rgb=True, image_weight=0.0)
    bgr = show_cam_on_image(img, mask, image_weight=0.0)
    np.testing.assert_array_equal(bgr, rgb[..., ::-1])
    hot = show_cam_on_image(img, np.ones((4, 6), np.float32), use_rgb=True, image_weight=0.0)
    assert tuple(hot[0, 0]) == (255, 0, 0)  # jet(1) is dark red, normalised to full red


def test_show_cam_on_image_errors():
    img = np.full((3, 3, 3), 0.5, dtype=np.float32)
    mask = np.zeros((3, 3), dtype=np.float32)
    with pytest.raises(ValueError, match=r"The input image should np.float32 in the range"):
        show_cam_on_image(img * 255, mask)
    with pytest.raises(Exception, match=r"image_weight should be in the range \[0, 1\]"):
        show_cam_on_image(img, mask, image_weight=1.5)
    with pytest.raises(ValueError, match="match the mask"):
        show_cam_on_image(img, np.zeros((4, 3), dtype=np.float32))
    with pytest.raises(ValueError, match=r"cams\[i\]"):
        show_cam_on_image(img, np.zeros((1, 3, 3), dtype=np.float32))


# -- resizing ---------------------------------------------------------------------------------

def test_resize_equals_recorded_opencv(reference):
    for case in reference["resize"]:
        src = _f32(case["input"])
        result = resize_bilinear(src, case["size"])
        expected = _f32(case["output"])
        assert result.dtype == np.float32 and result.shape == expected.shape
        np.testing.assert_allclose(result, expected, rtol=0, atol=1e-6,
                                   err_msg=f"{src.shape} -> {case['size']}")


def test_resize_equals_opencv_live():
    cv2 = pytest.importorskip("cv2")
    rng = np.random.default_rng(3)
    sources = [(7, 7), (14, 14), (3, 4), (1, 5), (5, 1), (1, 1), (224, 224), (10, 6, 3)]
    sizes = [(224, 224), (45, 67), (7, 9), (2, 3), (1, 1), (13, 31), (300, 1)]
    for shape in sources:
        src = rng.random(shape, dtype=np.float32)
        for size in sizes + [(shape[1] * 2, shape[0] * 2), (shape[1], shape[0])]:
            np.testing.assert_allclose(resize_bilinear(src, size), cv2.resize(src, size),
                                       rtol=0, atol=1e-6, err_msg=f"{shape} -> {size}")


def test_resize_properties():
    ramp = np.array([[0.0, 1.0]], dtype=np.float32)
    np.testing.assert_allclose(resize_bilinear(ramp, (4, 1)), [[0.0, 0.25, 0.75, 1.0]])
    rng = np.random.default_rng(2)
    src = rng.random((5, 6, 3), dtype=np.float32)
    np.testing.assert_array_equal(resize_bilinear(src, (6, 5)), src)
    constant = np.full((3, 4), 0.3, dtype=np.float32)
    np.testing.assert_allclose(resize_bilinear(constant, (11, 9)), 0.3, rtol=1e-6)
    with pytest.raises(ValueError, match="positive"):
        resize_bilinear(src, (0, 4))


def test_scale_cam_image_equals_recorded_reference(reference):
    for case in reference["scale_cam_image"]:
        size = tuple(case["size"]) if case["size"] else None
        result = scale_cam_image(_f32(case["input"]), size)
        assert result.dtype == np.float32
        np.testing.assert_allclose(result, _f32(case["output"]), rtol=0, atol=1e-6)


def test_scale_cam_image_equals_reference_live():
    reference = pytest.importorskip("pytorch_grad_cam.utils.image")
    rng = np.random.default_rng(4)
    cams = rng.normal(size=(3, 7, 7)).astype(np.float32)
    for size in (None, (224, 224), (45, 67)):
        np.testing.assert_allclose(scale_cam_image(cams, size),
                                   reference.scale_cam_image(cams, size), rtol=0, atol=1e-6)


def test_scale_cam_image_normalises_each_map():
    cams = np.stack([np.arange(12, dtype=np.float32).reshape(3, 4) * s for s in (1, -2)])
    scaled = scale_cam_image(cams, (8, 6))
    assert scaled.shape == (2, 6, 8)
    assert scaled.min() == 0 and np.allclose(scaled.max(axis=(1, 2)), 1, atol=1e-6)


# -- pre- and post-processing -----------------------------------------------------------------

def test_preprocess_image_equals_recorded_reference(reference):
    for case in reference["preprocess_image"]:
        img = np.array(case["input"], dtype=case["dtype"])
        result = preprocess_image(img, IMAGENET_MEAN, IMAGENET_STD)
        assert result.dtype == np.float32 and result.flags.c_contiguous
        np.testing.assert_array_equal(result, _f32(case["output"]))


def test_preprocess_image_defaults_are_imagenet():
    img = np.full((2, 3, 3), 0.5, dtype=np.float32)
    result = preprocess_image(img)
    assert result.shape == (1, 3, 2, 3)
    expected = (np.float32(0.5) - _f32(IMAGENET_MEAN)) / _f32(IMAGENET_STD)
    np.testing.assert_array_equal(result[0, :, 0, 0], expected)
    with pytest.raises(ValueError, match="one value per channel"):
        preprocess_image(np.zeros((2, 2, 4), dtype=np.float32))


def test_deprocess_image_equals_recorded_reference(reference):
    for case in reference["deprocess_image"]:
        result = deprocess_image(_f32(case["input"]))
        assert result.dtype == np.uint8
        np.testing.assert_array_equal(result, np.array(case["output"], dtype=np.uint8))


# -- load_image -------------------------------------------------------------------------------

def test_load_image_reads_rgb_in_unit_range(tmp_path):
    pixels = (np.arange(5 * 4 * 3) * 4 % 256).astype(np.uint8).reshape(5, 4, 3)
    Image.fromarray(pixels).save(tmp_path / "a.png")
    loaded = load_image(tmp_path / "a.png")
    assert loaded.dtype == np.float32 and loaded.shape == (5, 4, 3)
    np.testing.assert_array_equal(loaded, pixels.astype(np.float32) / 255)


def test_load_image_resizes_and_converts(tmp_path):
    Image.new("L", (10, 8), 200).save(tmp_path / "grey.png")
    Image.new("RGBA", (6, 6), (10, 20, 30, 0)).save(tmp_path / "alpha.png")
    grey = load_image(str(tmp_path / "grey.png"), size=4)
    assert grey.shape == (4, 4, 3) and np.allclose(grey, 200 / 255)
    assert load_image(tmp_path / "grey.png", size=(7, 3)).shape == (3, 7, 3)
    np.testing.assert_allclose(load_image(tmp_path / "alpha.png")[0, 0],
                               np.array([10, 20, 30]) / 255, rtol=1e-6)


def test_load_image_errors(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_image(tmp_path / "missing.png")
    with pytest.raises(IsADirectoryError):
        load_image(tmp_path)
    (tmp_path / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n but not really")
    with pytest.raises(swiftcam.SwiftCAMIOError, match="corrupt.png: cannot read the image"):
        load_image(tmp_path / "corrupt.png")
    Image.new("RGB", (64, 64), "red").save(tmp_path / "truncated.jpg")
    data = (tmp_path / "truncated.jpg").read_bytes()
    (tmp_path / "truncated.jpg").write_bytes(data[: len(data) // 2])
    with pytest.raises(OSError, match="truncated.jpg"):
        load_image(tmp_path / "truncated.jpg")
