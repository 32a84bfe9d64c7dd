"""One-call explanations: :func:`explain` and the :class:`Explanation` it returns.

    >>> import swiftcam
    >>> from swiftcam.explanation import explain
    >>> ex = explain(model, "cat.jpg", method="gradcam++", top_k=3, labels=imagenet_classes)
    >>> ex                      # in Jupyter: the image and one overlay per class, captioned
    >>> ex.save("cat-cam.png")  # the same panel as a PNG
    >>> ex.overlay(0)           # uint8 RGB overlay of the top class

:func:`explain` loads and preprocesses the image, runs the CAM for the ``top_k`` highest-scoring
classes in one pass (:meth:`swiftcam.BaseCAM.top_k`) and reports softmax probabilities.
"""

import json
import os
from collections.abc import Mapping

import numpy as np

from . import cam as _cam
from .errors import InvalidInputError
from .fullgrad import FullGrad
from .perturbation_cams import AblationCAM, ScoreCAM
from .utils.image import (IMAGENET_MEAN, IMAGENET_STD, _size_pair, load_image,
                          preprocess_image, show_cam_on_image)

__all__ = ["Explanation", "explain", "cam_class", "make_cam", "METHODS", "LAYERLESS_METHODS",
           "method_name", "method_names", "read_labels", "montage"]

#: Method names accepted by :func:`explain` (compared case-insensitively, ignoring "-", "_"
#: and spaces) and the CAM class each one selects.
METHODS = {
    "gradcam": _cam.GradCAM,
    "hirescam": _cam.HiResCAM,
    "gradcamelementwise": _cam.GradCAMElementWise,
    "gradcam++": _cam.GradCAMPlusPlus,
    "gradcamplusplus": _cam.GradCAMPlusPlus,
    "xgradcam": _cam.XGradCAM,
    "layercam": _cam.LayerCAM,
    "eigencam": _cam.EigenCAM,
    "eigengradcam": _cam.EigenGradCAM,
    "scorecam": ScoreCAM,
    "ablationcam": AblationCAM,
    "fullgrad": FullGrad,
}
#: Aliases in :data:`METHODS` that error messages and help texts do not list.
_ALIASES = ("gradcamplusplus",)
#: CAM classes that ignore target layers (FullGrad uses every layer with a bias): :func:`explain`
#: and the command line build them without any, so their ``layer`` argument is ignored.
LAYERLESS_METHODS = (FullGrad,)

# Panel layout, in pixels.
_TILE_MIN = 128   # a tile's shorter side is enlarged to at least this
_TILE_MAX = 320   # ... and its longer side reduced to at most this
_PAD = 8
_FONT_SIZE = 13


def cam_class(method):
    """The CAM class for a method name such as ``"gradcam"`` or ``"GradCAM++"``.

    Parameters
    ----------
    method : str or type
        A key of :data:`METHODS` in any case, with or without "-", "_" or spaces; a CAM
        class (a subclass of :class:`swiftcam.BaseCAM`) is returned as it is.

    Returns
    -------
    type
    """
    if isinstance(method, type) and issubclass(method, _cam.BaseCAM):
        return method
    return METHODS[method_name(method)]


def method_name(method):
    """The listed name (see :func:`method_names`) of a method name in any spelling that
    :func:`cam_class` accepts: ``"GradCAM++"``, ``"grad_cam_plus_plus"`` -> ``"gradcam++"``.

    Raises :class:`~swiftcam.InvalidInputError` listing the valid names for an unknown one.
    """
    if not isinstance(method, str):
        raise TypeError(f"method: expected a name such as 'gradcam', got {type(method).__name__}")
    key = method.lower().replace("-", "").replace("_", "").replace(" ", "")
    if key not in METHODS:
        raise InvalidInputError(f"unknown CAM method {method!r}; choose one of: "
                                f"{', '.join(method_names())}")
    return next(name for name in method_names() if METHODS[name] is METHODS[key])


def method_names():
    """The method names :func:`cam_class` accepts, without aliases, in :data:`METHODS` order."""
    return tuple(name for name in METHODS if name not in _ALIASES)


def make_cam(method, model, layer="layer4"):
    """The CAM object :func:`explain` uses: ``cam_class(method)`` on ``model`` and ``layer``.

    ``layer`` (a name or a sequence of names) is ignored, silently, for the classes in
    :data:`LAYERLESS_METHODS` (FullGrad), which are built without target layers.
    """
    cls = cam_class(method)
    if issubclass(cls, LAYERLESS_METHODS):
        return cls(model)
    return cls(model, target_layers=[layer] if isinstance(layer, str) else layer)


# -- labels -----------------------------------------------------------------------------------

def read_labels(source):
    """Class names from a JSON file, a sequence or a mapping.

    Parameters
    ----------
    source : str, os.PathLike, sequence of str or mapping
        A JSON file holding a list (index -> name) or an object (``{"3": "cat"}``), or such a
        list or dict directly.

    Returns
    -------
    list or dict
        Something :func:`_label_of` can look class indices up in.
    """
    if isinstance(source, (str, bytes, os.PathLike)):
        with open(source, encoding="utf-8") as file:
            source = json.load(file)
    if isinstance(source, Mapping):
        return {int(key): str(value) for key, value in source.items()}
    if isinstance(source, (list, tuple)):
        return [str(name) for name in source]
    raise TypeError(f"labels: expected a list of class names, a dict or a JSON file, got "
                    f"{type(source).__name__}")


def _label_of(labels, index):
    """The name of class ``index`` (``"class 3"`` when unknown)."""
    if isinstance(labels, Mapping):
        return labels.get(index, f"class {index}")
    if labels is not None and 0 <= index < len(labels):
        return labels[index]
    return f"class {index}"


# -- the result -------------------------------------------------------------------------------

class Explanation:
    """An image, its CAMs for one or more classes, and what the model thought of it.

    Displays itself in Jupyter (:meth:`_repr_png_`): the image and one captioned overlay per
    class, side by side.

    Parameters
    ----------
    image : numpy.ndarray, float, (H, W, 3)
        RGB in [0, 1].
    heatmaps : numpy.ndarray, float, (K, H, W) or (H, W)
        One CAM per explained class, in [0, 1].
    classes : sequence of int
        The K class indices.
    scores : sequence of float
        The K softmax probabilities.
    labels : sequence of str, optional
        The K class names; None shows ``"class <index>"``.
    method : str
        The CAM method's name, e.g. ``"GradCAM"``.
    layers : sequence of str
        The target layers; empty for a method that uses none (FullGrad).
    logits : numpy.ndarray, optional
        All the model's logits for the image.
    source : str, optional
        The image file, when it came from one.

    Attributes
    ----------
    image, heatmaps, classes, scores, labels, method, layers, logits, source
        As given; ``classes`` and ``scores`` as tuples, ``labels`` a tuple or None.
    """

    def __init__(self, image, heatmaps, classes, scores, labels=None, method="GradCAM",
                 layers=("layer4",), logits=None, source=None):
        self.image = _check_image(image)
        self.heatmaps = _check_heatmaps(heatmaps, self.image.shape[:2])
        count = self.heatmaps.shape[0]
        self.classes = tuple(int(c) for c in classes)
        self.scores = tuple(float(s) for s in scores)
        self.labels = None if labels is None else tuple(str(name) for name in labels)
        for name, values in (("classes", self.classes), ("scores", self.scores),
                             ("labels", self.labels or (None,) * count)):
            if len(values) != count:
                raise ValueError(f"{name}: expected {count} entries (one per heatmap), got "
                                 f"{len(values)}")
        self.method = str(method)
        self.layers = (layers,) if isinstance(layers, str) else tuple(layers)
        self.logits = None if logits is None else np.asarray(logits)
        self.source = None if source is None else os.fspath(source)

    def __len__(self):
        return len(self.classes)

    @property
    def class_names(self):
        """The class names, ``"class <index>"`` where no labels were given."""
        if self.labels is not None:
            return self.labels
        return tuple(f"class {c}" for c in self.classes)

    def overlay(self, k=0, image_weight=0.5, colormap="jet"):
        """The image with the ``k``-th CAM on top (see :func:`show_cam_on_image`).

        Returns
        -------
        numpy.ndarray
            uint8, (H, W, 3), **RGB**.
        """
        return show_cam_on_image(self.image, self.heatmaps[k], use_rgb=True,
                                 colormap=colormap, image_weight=image_weight)

    def to_pil(self, image_weight=0.5, colormap="jet"):
        """The panel :meth:`_repr_png_` shows, as a Pillow image.

        The input image, then one overlay per class (highest score first) captioned with the
        class name and its probability, under a title naming the method and layers.
        """
        tiles = [_to_uint8(self.image)]
        captions = [("input", f"{self.image.shape[1]}x{self.image.shape[0]}")]
        for k in range(len(self)):
            tiles.append(self.overlay(k, image_weight, colormap))
            captions.append((f"#{k + 1} {self.class_names[k]}", _percent(self.scores[k])))
        return montage(tiles, captions, self._title())

    def save(self, path, k=None, image_weight=0.5, colormap="jet"):
        """Write a PNG: the whole panel, or only the ``k``-th overlay when ``k`` is given.

        Parameters
        ----------
        path : str or os.PathLike
        k : int, optional

        Returns
        -------
        str
            The path written.
        """
        from PIL import Image

        if k is None:
            picture = self.to_pil(image_weight, colormap)
        else:
            picture = Image.fromarray(self.overlay(k, image_weight, colormap))
        picture.save(path, format="PNG")
        return os.fspath(path)

    def to_dict(self, digits=6):
        """A JSON-friendly summary: method, layers, classes, labels, scores (and source)."""
        result = {
            "method": self.method,
            "layers": list(self.layers),
            "classes": list(self.classes),
            "labels": list(self.class_names),
            "scores": [round(s, digits) for s in self.scores],
        }
        if self.source is not None:
            result["file"] = self.source
        return result

    def _repr_png_(self):
        import io

        buffer = io.BytesIO()
        self.to_pil().save(buffer, format="PNG")
        return buffer.getvalue()

    def __repr__(self):
        tops = ", ".join(f"{name} ({_percent(score)})"
                         for name, score in zip(self.class_names, self.scores))
        height, width = self.image.shape[:2]
        return f"<Explanation {self._title()} of a {width}x{height} image: {tops}>"

    def _title(self):
        """``"GradCAM @ layer4"``; only the method when there are no layers (FullGrad)."""
        return f"{self.method} @ {', '.join(self.layers)}" if self.layers else self.method


def _check_image(image):
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"image: expected (H, W, 3) RGB, got shape {image.shape}")
    if image.dtype.kind != "f" or image.size == 0 or image.min() < 0 or image.max() > 1:
        raise ValueError("image: expected float values in [0, 1]")
    return image


def _check_heatmaps(heatmaps, size):
    heatmaps = np.asarray(heatmaps, dtype=np.float32)
    if heatmaps.ndim == 2:
        heatmaps = heatmaps[None]
    if heatmaps.ndim != 3 or heatmaps.shape[1:] != tuple(size) or heatmaps.shape[0] == 0:
        raise ValueError(f"heatmaps: expected (K, {size[0]}, {size[1]}) to match the image, "
                         f"got shape {heatmaps.shape}")
    return heatmaps


def _percent(score):
    return f"{100 * score:.1f}%"


def _to_uint8(image):
    return np.uint8(np.clip(np.rint(255 * np.asarray(image, dtype=np.float64)), 0, 255))


# -- drawing ----------------------------------------------------------------------------------

def montage(images, captions=None, title=None):
    """Put same-sized images side by side, with captions under them and a title above.

    Parameters
    ----------
    images : sequence of numpy.ndarray
        uint8 RGB (H, W, 3) images (e.g. overlays), all the same size.
    captions : sequence, optional
        One per image: a string or a sequence of lines.
    title : str, optional

    Returns
    -------
    PIL.Image.Image
        Small images are enlarged (and large ones reduced) so that text stays readable.
    """
    from PIL import Image, ImageDraw

    tiles = [Image.fromarray(np.asarray(image, dtype=np.uint8)) for image in images]
    if not tiles:
        raise ValueError("montage: no images")
    tile_size = _tile_size(tiles[0].size)
    tiles = [tile.resize(tile_size, Image.BILINEAR) if tile.size != tile_size else tile
             for tile in tiles]
    captions = [_lines(c) for c in (captions or [()] * len(tiles))]
    font = _font()
    line_height = _line_height(font)
    caption_lines = max((len(lines) for lines in captions), default=0)
    top = _PAD + (line_height + _PAD // 2 if title else 0)
    width = _PAD + len(tiles) * (tile_size[0] + _PAD)
    height = top + tile_size[1] + _PAD // 2 + caption_lines * line_height + _PAD
    canvas = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(canvas)
    if title:
        draw.text((_PAD, _PAD), _fit(draw, title, font, width - 2 * _PAD), fill="black",
                  font=font)
    for index, (tile, lines) in enumerate(zip(tiles, captions)):
        x = _PAD + index * (tile_size[0] + _PAD)
        canvas.paste(tile, (x, top))
        for row, line in enumerate(lines):
            y = top + tile_size[1] + _PAD // 2 + row * line_height
            draw.text((x, y), _fit(draw, line, font, tile_size[0]), fill="black", font=font)
    return canvas


def _tile_size(size):
    width, height = size
    scale = max(1.0, _TILE_MIN / min(width, height))
    scale = min(scale, _TILE_MAX / max(width, height))
    return max(1, round(width * scale)), max(1, round(height * scale))


def _lines(caption):
    if caption is None:
        return ()
    if isinstance(caption, str):
        return tuple(caption.splitlines())
    return tuple(str(line) for line in caption)


def _font():
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=_FONT_SIZE)
    except TypeError:  # Pillow < 10.1: the fixed bitmap font
        return ImageFont.load_default()


def _line_height(font):
    box = font.getbbox("Ag")
    return box[3] + 4


def _fit(draw, text, font, width):
    """``text``, shortened with ".." if it is wider than ``width`` pixels."""
    if draw.textlength(text, font=font) <= width:
        return text
    while text and draw.textlength(text + "..", font=font) > width:
        text = text[:-1]
    return text + ".."


# -- explain ----------------------------------------------------------------------------------

def explain(model, image, method="gradcam", layer="layer4", top_k=1, size=None, labels=None,
            classes=None, mean=IMAGENET_MEAN, std=IMAGENET_STD):
    """Explain a model's top classes on one image.

    Parameters
    ----------
    model : swiftcam.Model, str or os.PathLike
        A loaded model, or a ``.safetensors`` file to load (closed again afterwards).
    image : str, os.PathLike, PIL.Image.Image or numpy.ndarray
        A file, a Pillow image, or an (H, W, 3) RGB array (uint8, or float in [0, 1]).
    method : str or type
        ``"gradcam"``, ``"hirescam"``, ``"gradcamelementwise"``, ``"gradcam++"`` (or
        ``"gradcamplusplus"``), ``"xgradcam"``, ``"layercam"``, ``"eigencam"``,
        ``"eigengradcam"``, ``"scorecam"``, ``"ablationcam"``, ``"fullgrad"``, in any case;
        or a CAM class. ScoreCAM runs one forward pass per channel of the layer (2048 at a
        ResNet-50's ``layer4``) and AblationCAM one pass of the network above the layer per
        channel: both are slower than the others.
    layer : str or sequence of str
        Target layer(s), names from ``model.layer_names``. Ignored for ``"fullgrad"``, which
        uses every layer with a bias (every batch norm); the result's ``layers`` is then ``()``.
    top_k : int
        How many of the highest-scoring classes to explain (one forward and one backward
        pass for all of them; ScoreCAM and AblationCAM share their perturbed passes too).
    size : int or (int, int), optional
        Resize the image to ``(size, size)`` or ``(width, height)`` first (Pillow bilinear).
        By default the image keeps its size (the ResNet accepts any size).
    labels : sequence, mapping, str or os.PathLike, optional
        Class names (see :func:`read_labels`).
    classes : sequence of int, optional
        Explain these classes instead of the ``top_k`` best ones.
    mean, std : sequence of float
        Normalisation (ImageNet's by default, as torchvision's ResNets expect).

    Returns
    -------
    Explanation
    """
    if isinstance(model, (str, bytes, os.PathLike)):
        from .model import load

        with load(model) as loaded:
            return explain(loaded, image, method, layer, top_k, size, labels, classes, mean, std)
    rgb, source = _rgb_image(image, size)
    cam = make_cam(method, model, layer)
    batch = preprocess_image(rgb, mean, std)
    if classes is None:
        heatmaps, chosen = cam.top_k(batch, top_k)
        heatmaps, chosen, logits = heatmaps[0], chosen[0], cam.outputs[0]
    else:
        heatmaps, chosen, logits = _explain_classes(cam, batch, classes)
    probabilities = _softmax(logits)
    names = None
    if labels is not None:
        table = read_labels(labels)
        names = [_label_of(table, int(c)) for c in chosen]
    return Explanation(rgb, heatmaps, chosen, probabilities[np.asarray(chosen)], names,
                       method=type(cam).__name__, layers=cam.target_layers, logits=logits,
                       source=source)


def _explain_classes(cam, batch, classes):
    """Heatmaps (K, H, W) of given classes: the image repeated once per class."""
    from .utils.model_targets import ClassifierOutputTarget

    chosen = [int(c) for c in classes]
    if not chosen:
        raise InvalidInputError("classes: expected at least one class index")
    repeated = np.ascontiguousarray(np.repeat(batch, len(chosen), axis=0))
    result = cam.explain(repeated, [ClassifierOutputTarget(c) for c in chosen])
    return result.heatmaps, np.asarray(chosen), result.logits[0]


def _softmax(logits):
    values = np.asarray(logits, dtype=np.float64)
    values = np.exp(values - values.max())
    return values / values.sum()


def _rgb_image(image, size):
    """(float32 RGB array in [0, 1], source path or None) from any accepted image."""
    if isinstance(image, (str, bytes, os.PathLike)):
        return load_image(image, size), os.fsdecode(os.fspath(image))
    if hasattr(image, "convert") and hasattr(image, "size"):  # a PIL image
        from PIL import Image

        rgb = image.convert("RGB")
        if size is not None:
            rgb = rgb.resize(_size_pair(size), Image.BILINEAR)
        return np.asarray(rgb, dtype=np.float32) / np.float32(255), None
    array = _rgb_array(image)
    if size is not None:
        array = _resize_float(array, _size_pair(size))
    return array, None


def _rgb_array(image):
    array = np.asarray(image)
    if array.ndim == 2:
        array = np.repeat(array[:, :, None], 3, axis=2)
    if array.ndim == 3 and array.shape[0] in (3, 4) and array.shape[2] not in (3, 4):
        raise ValueError(f"image: expected (H, W, 3) channels-last, got {array.shape}; "
                         "transpose a (3, H, W) array with image.transpose(1, 2, 0)")
    if array.ndim != 3 or array.shape[2] not in (3, 4):
        raise ValueError(f"image: expected an (H, W, 3) RGB array, got shape {array.shape}")
    array = array[:, :, :3]
    if array.dtype == np.uint8:
        return array.astype(np.float32) / np.float32(255)
    if array.dtype.kind != "f":
        raise TypeError(f"image: expected uint8 or float values, got {array.dtype}")
    if array.size and (np.nanmin(array) < 0 or np.nanmax(array) > 1):
        raise ValueError("image: float images must be RGB in [0, 1] (divide uint8 values by 255)")
    return np.ascontiguousarray(array, dtype=np.float32)


def _resize_float(array, size):
    """Pillow's bilinear resize of a float image, one channel at a time (mode "F")."""
    from PIL import Image

    channels = [np.asarray(Image.fromarray(np.ascontiguousarray(array[:, :, c]))
                           .resize(size, Image.BILINEAR)) for c in range(array.shape[2])]
    return np.clip(np.stack(channels, axis=2), 0, 1).astype(np.float32)
