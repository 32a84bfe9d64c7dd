"""The demo model shipped inside the package, and its example images.

The files live in ``swiftcam/data/`` (written by ``tools/demo_model/train.py``):

- ``demo_resnet.safetensors``: a narrow torchvision ResNet-18 trained on synthetic shapes;
- ``demo_labels.json``: the class names, a JSON list;
- ``demo_model.json``: the model card (input size, mean/std, accuracy, training set-up);
- ``examples/``: example images and ``examples.json`` describing them.

    >>> from swiftcam import demo
    >>> model = demo.load_demo_model()
    >>> labels = demo.demo_labels()

The environment variable ``SWIFTCAM_DEMO_DIR`` points these functions at another folder with
the same layout (used by the tests).
"""

import errno
import json
import os
from pathlib import Path

__all__ = ["data_dir", "is_available", "load_demo_model", "demo_labels", "demo_card",
           "demo_input_size", "example_images"]

WEIGHTS_FILE = "demo_resnet.safetensors"
LABELS_FILE = "demo_labels.json"
CARD_FILE = "demo_model.json"
EXAMPLES_DIR = "examples"
EXAMPLES_FILE = "examples.json"


def data_dir():
    """The folder holding the demo files (``SWIFTCAM_DEMO_DIR`` or ``swiftcam/data``)."""
    override = os.environ.get("SWIFTCAM_DEMO_DIR")
    return Path(override) if override else Path(__file__).resolve().parent / "data"


def is_available():
    """True when the demo weights, labels and model card are all present."""
    folder = data_dir()
    return all((folder / name).is_file() for name in (WEIGHTS_FILE, LABELS_FILE, CARD_FILE))


def load_demo_model():
    """Load the demo ResNet.

    Returns
    -------
    swiftcam.Model

    Raises
    ------
    swiftcam.ModelFileNotFoundError
        The demo files are not installed (a ``FileNotFoundError``).
    """
    from .model import load

    return load(_require(WEIGHTS_FILE))


def demo_labels():
    """The demo model's class names, a list indexed by class."""
    return _read_json(LABELS_FILE)


def demo_card():
    """The demo model card (``demo_model.json``) as a dict."""
    return _read_json(CARD_FILE)


def demo_input_size():
    """The ``(width, height)`` the demo model was trained at."""
    width, height = demo_card()["input"]["size"]
    return int(width), int(height)


def example_images():
    """The example images shipped with the demo model.

    Returns
    -------
    list of dict
        One per image, from ``examples/examples.json``: ``"path"`` (absolute
        :class:`~pathlib.Path`), ``"file"``, ``"label"`` (class index), ``"class"`` (its
        name) and whatever else the manifest records (e.g. the object's ``"box"``).
    """
    manifest_path = _require(os.path.join(EXAMPLES_DIR, EXAMPLES_FILE))
    with open(manifest_path, encoding="utf-8") as file:
        manifest = json.load(file)
    folder = manifest_path.parent
    return [dict(entry, path=folder / entry["file"]) for entry in manifest["examples"]]


def _require(name):
    path = data_dir() / name
    if not path.is_file():
        from .errors import ModelFileNotFoundError

        raise ModelFileNotFoundError(
            errno.ENOENT, "swiftcam's demo model is not installed (it ships in the wheel; in "
            "a source checkout run tools/demo_model/train.py, or set SWIFTCAM_DEMO_DIR)",
            str(path))
    return path


def _read_json(name):
    with open(_require(name), encoding="utf-8") as file:
        return json.load(file)
