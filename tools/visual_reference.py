"""Record the reference values of the visualization helpers for the tests.

Developer tool. Runs OpenCV and pytorch-grad-cam 1.5.7 on small deterministic inputs and
writes ``python/tests/data/visual_reference.json``, which ``python/tests/test_image.py``
compares swiftcam's NumPy implementations with when OpenCV is not installed:

* ``jet_bgr``: ``cv2.applyColorMap`` of 0..255 with ``COLORMAP_JET`` (BGR, 256 x 3);
* ``resize``: ``cv2.resize`` (INTER_LINEAR) of float32 arrays;
* ``scale_cam_image``, ``show_cam_on_image``, ``preprocess_image``, ``deprocess_image``:
  the functions of ``pytorch_grad_cam.utils.image``.

Float32 values are written as the shortest decimal that reads back as the same float32
number, so the comparison is exact. Re-running rewrites an identical file.

Usage (from the repository root)::

    .venv-torch/bin/python tools/visual_reference.py [--output FILE]
"""

import argparse
import json
from importlib import metadata
from pathlib import Path

import cv2
import numpy as np
from pytorch_grad_cam.utils import image as reference

REPO = Path(__file__).resolve().parents[1]
DEFAULT_OUTPUT = REPO / "python" / "tests" / "data" / "visual_reference.json"
IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]

# (input shape, (width, height)): up- and down-sampling, a single row (OpenCV's float32
# coordinate path), three channels, and a typical 7x7 CAM enlarged to a non-square input.
RESIZE_CASES = [((3, 4), (7, 5)), ((5, 6), (2, 3)), ((7, 7), (19, 23)), ((1, 5), (9, 3)),
                ((4, 3, 3), (5, 6)), ((13, 11), (6, 4))]


def _list(array):
    """Nested lists; float32 values as shortest round-tripping decimals."""
    array = np.asarray(array)
    if array.dtype == np.float32:
        shortest = np.vectorize(lambda v: float(np.format_float_positional(v, unique=True)),
                                otypes=[object])
        return shortest(array).tolist()
    return array.tolist()


def jet():
    values = np.arange(256, dtype=np.uint8).reshape(256, 1)
    return _list(cv2.applyColorMap(values, cv2.COLORMAP_JET)[:, 0])


def resize_cases(rng):
    cases = []
    for shape, size in RESIZE_CASES:
        src = rng.random(shape, dtype=np.float32)
        cases.append({"input": _list(src), "size": list(size),
                      "output": _list(cv2.resize(src, size))})
    return cases


def scale_cam_cases(rng):
    cams = rng.random((2, 4, 5), dtype=np.float32) * 3 - 1
    return [{"input": _list(cams), "size": None, "output": _list(reference.scale_cam_image(cams))},
            {"input": _list(cams), "size": [9, 7],
             "output": _list(reference.scale_cam_image(cams, (9, 7)))}]


def show_cam_cases(rng):
    img = rng.random((6, 5, 3), dtype=np.float32)
    mask = rng.random((6, 5), dtype=np.float32)
    mask[0, 0], mask[0, 1] = 0.0, 1.0
    cases = []
    for use_rgb, weight, colormap, name in ((False, 0.5, cv2.COLORMAP_JET, "jet"),
                                            (True, 0.5, cv2.COLORMAP_JET, "jet"),
                                            (True, 0.2, cv2.COLORMAP_JET, "jet"),
                                            (False, 0.0, cv2.COLORMAP_JET, "jet"),
                                            (True, 0.7, cv2.COLORMAP_TURBO, "turbo"),
                                            (False, 0.5, cv2.COLORMAP_VIRIDIS, "viridis"),
                                            (True, 0.5, cv2.COLORMAP_INFERNO, "inferno")):
        output = reference.show_cam_on_image(img, mask, use_rgb, colormap, weight)
        cases.append({"use_rgb": use_rgb, "image_weight": weight, "colormap": name,
                      "output": _list(output)})
    return {"img": _list(img), "mask": _list(mask), "cases": cases}


def preprocess_cases(rng):
    as_uint8 = (rng.random((3, 4, 3)) * 256).astype(np.uint8)
    as_float = rng.random((2, 3, 3), dtype=np.float32)
    return [{"input": _list(img), "dtype": str(img.dtype),
             "output": _list(reference.preprocess_image(img, IMAGENET_MEAN,
                                                        IMAGENET_STD).numpy())}
            for img in (as_uint8, as_float)]


def deprocess_cases(rng):
    img = rng.normal(size=(3, 4, 3)).astype(np.float32)
    return [{"input": _list(img), "output": _list(reference.deprocess_image(img))}]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    args = parser.parse_args(argv)
    rng = np.random.default_rng(20240917)
    payload = {
        "generator": "tools/visual_reference.py",
        "versions": {"opencv": cv2.__version__, "grad-cam": metadata.version("grad-cam"),
                     "numpy": np.__version__},
        "jet_bgr": jet(),
        "resize": resize_cases(rng),
        "scale_cam_image": scale_cam_cases(rng),
        "show_cam_on_image": show_cam_cases(rng),
        "preprocess_image": preprocess_cases(rng),
        "deprocess_image": deprocess_cases(rng),
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(payload, separators=(",", ":")) + "\n")
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
