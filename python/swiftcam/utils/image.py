"""Image helpers laid out like ``pytorch_grad_cam.utils.image``, in NumPy and Pillow only.

``from pytorch_grad_cam.utils.image import show_cam_on_image`` becomes
``from swiftcam.utils.image import show_cam_on_image``. No OpenCV, torch or scipy is needed:

- :func:`show_cam_on_image` reproduces the reference's arithmetic exactly, with OpenCV's JET
  table rebuilt bit for bit (:mod:`swiftcam.utils.colormaps`). Like the reference it returns
  **BGR** unless ``use_rgb=True``.
- :func:`resize_bilinear` reproduces ``cv2.resize(..., INTER_LINEAR)`` on float32 arrays
  (half-pixel centres, edge clamp, no antialiasing) to about one float32 rounding (< 1e-6);
  :func:`scale_cam_image` uses it where the reference calls ``cv2.resize``.
- :func:`preprocess_image` returns a NumPy array ``(1, C, H, W)`` where the reference returns
  a torch tensor. Its default mean/std are ImageNet's (the reference defaults to 0.5).
- :func:`load_image` reads a file with Pillow into float32 RGB in [0, 1].
"""

import errno
import os

import numpy as np

from ..errors import SwiftCAMIOError
from .colormaps import apply_colormap

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "show_cam_on_image", "preprocess_image",
           "deprocess_image", "scale_cam_image", "resize_bilinear", "load_image"]

#: torchvision's ImageNet normalisation.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


# -- overlay ----------------------------------------------------------------------------------

def show_cam_on_image(img, mask, use_rgb=False, colormap="jet", image_weight=0.5):
    """Overlay a CAM on an image, exactly as pytorch-grad-cam does.

    ``heatmap = colormap[uint8(255 * mask)]`` (the conversion truncates, it does not round),
    as float32 / 255; ``cam = (1 - image_weight) * heatmap + image_weight * img``; ``cam`` is
    divided by its maximum and returned as ``uint8(255 * cam)``.

    .. warning:: The default is **BGR** output, as in pytorch-grad-cam (and OpenCV). For an
       RGB image (from Pillow, :func:`load_image`, matplotlib) pass ``use_rgb=True``;
       otherwise red and blue are swapped: hot regions look blue. Drop-in compatibility is
       the reason for this default.

    Parameters
    ----------
    img : numpy.ndarray, float, (H, W, 3)
        The image in [0, 1], in the channel order the result should have (RGB with
        ``use_rgb=True``, BGR otherwise).
    mask : numpy.ndarray, float, (H, W)
        The CAM, normally in [0, 1] (as returned by ``cam(...)[i]``).
    use_rgb : bool
        Colour the heatmap in RGB instead of BGR.
    colormap : str, int or array_like
        ``"jet"`` (OpenCV's table, bit for bit), ``"turbo"``, ``"viridis"``, ``"inferno"``,
        ``"gray"``, one of OpenCV's ids (``cv2.COLORMAP_JET`` == 2, ...) or a ``(256, 3)``
        uint8 RGB table; see :func:`swiftcam.utils.colormaps.get_colormap`.
    image_weight : float
        Weight of the image in [0, 1]; the heatmap gets ``1 - image_weight``.

    Returns
    -------
    numpy.ndarray
        uint8, (H, W, 3).

    Raises
    ------
    ValueError
        ``img.max() > 1`` ("The input image should np.float32 in the range [0, 1]"),
        ``image_weight`` outside [0, 1], or shapes that do not match. The reference raises a
        bare ``Exception`` with the same messages; ``ValueError`` is a subclass of it.
    """
    img = np.asarray(img)
    mask = np.asarray(mask)
    _check_overlay_inputs(img, mask, image_weight)
    heatmap = apply_colormap(np.uint8(255 * mask), colormap)
    if not use_rgb:
        heatmap = heatmap[..., ::-1]
    heatmap = np.float32(heatmap) / 255
    cam = (1 - image_weight) * heatmap + image_weight * img
    cam = cam / np.max(cam)
    return np.uint8(255 * cam)


def _check_overlay_inputs(img, mask, image_weight):
    if mask.ndim != 2:
        raise ValueError(f"mask: expected a single CAM of shape (H, W), got shape {mask.shape}; "
                         "for a batch pass cams[i]")
    if img.ndim != 3 or img.shape[:2] != mask.shape or img.shape[2] not in (1, 3):
        raise ValueError(f"img: expected shape {mask.shape + (3,)} to match the mask "
                         f"{mask.shape}, got {img.shape}; resize the CAM or the image first")
    if np.max(img) > 1:
        raise ValueError("The input image should np.float32 in the range [0, 1]")
    if image_weight < 0 or image_weight > 1:
        raise ValueError(f"image_weight should be in the range [0, 1]. Got: {image_weight}")


# -- pre- and post-processing -----------------------------------------------------------------

def preprocess_image(img, mean=IMAGENET_MEAN, std=IMAGENET_STD):
    """Normalise an image into a model input, like torchvision's ``ToTensor`` + ``Normalize``.

    Parameters
    ----------
    img : numpy.ndarray, (H, W, C) or (H, W)
        Float values are used as they are (normally RGB in [0, 1]); uint8 values are divided
        by 255 first, as ``ToTensor`` does.
    mean, std : sequence of float
        Per channel. The defaults are ImageNet's, which torchvision's pretrained ResNets (and
        swiftcam's demo model) expect; pytorch-grad-cam's defaults are 0.5, so pass
        ``mean=[0.5] * 3, std=[0.5] * 3`` to reproduce a call that relied on them.

    Returns
    -------
    numpy.ndarray
        float32, C-contiguous, (1, C, H, W): ``(img - mean) / std`` computed in float32, the
        same values as the reference's torch tensor.
    """
    array = np.asarray(img)
    if array.ndim == 2:
        array = array[:, :, None]
    if array.ndim != 3:
        raise ValueError(f"img: expected an (H, W, C) or (H, W) image, got shape {array.shape}")
    if array.dtype == np.uint8:
        array = array.astype(np.float32) / np.float32(255)
    elif array.dtype.kind not in "fiub":
        raise TypeError(f"img: expected a numeric image, got dtype {array.dtype}")
    mean = np.asarray(mean, dtype=np.float32).reshape(-1)
    std = np.asarray(std, dtype=np.float32).reshape(-1)
    channels = array.shape[2]
    if mean.size != channels or std.size != channels:
        raise ValueError(f"mean and std need one value per channel ({channels}), got "
                         f"{mean.size} and {std.size}")
    chw = np.ascontiguousarray(array.transpose(2, 0, 1), dtype=np.float32)
    normalised = (chw - mean[:, None, None]) / std[:, None, None]
    return np.ascontiguousarray(normalised[None])


def deprocess_image(img):
    """Map an arbitrary array (e.g. guided-backprop gradients) to a viewable uint8 image.

    As the reference: subtract the mean, divide by (std + 1e-5), scale by 0.1, shift by 0.5,
    clip to [0, 1] and return ``uint8(255 * img)``.
    """
    img = np.asarray(img)
    img = img - np.mean(img)
    img = img / (np.std(img) + 1e-5)
    img = img * 0.1
    img = img + 0.5
    img = np.clip(img, 0, 1)
    return np.uint8(img * 255)


def scale_cam_image(cam, target_size=None):
    """Min-max normalise each map of a batch and optionally resize it, as the reference does.

    Per map: subtract the minimum, divide by ``1e-7 + max``, then (with ``target_size``)
    resize with :func:`resize_bilinear` (the reference calls ``cv2.resize``).

    Parameters
    ----------
    cam : array_like, (N, h, w)
    target_size : (int, int), optional
        ``(width, height)``, in OpenCV's order.

    Returns
    -------
    numpy.ndarray
        float32, (N, h, w) or (N, height, width).
    """
    result = []
    for img in cam:
        img = img - np.min(img)
        img = img / (1e-7 + np.max(img))
        if target_size is not None:
            if len(img.shape) > 2:
                raise ValueError("scale_cam_image: resizing 3-D maps (scipy.ndimage.zoom in "
                                 "pytorch-grad-cam) is not supported; pass 2-D maps (N, h, w)")
            img = resize_bilinear(np.float32(img), target_size)
        result.append(img)
    return np.float32(result)


# -- resizing ---------------------------------------------------------------------------------

def resize_bilinear(img, size):
    """Resize with bilinear interpolation, matching ``cv2.resize(img, size)`` (INTER_LINEAR).

    Pixel centres are at half-integers (``align_corners=False``), source coordinates outside
    the image are clamped to the edge, there is no antialiasing when shrinking. The same as
    torch's ``interpolate(mode="bilinear", align_corners=False)``. The weights and arithmetic
    follow OpenCV's float32 path, so results agree with OpenCV to about 2e-7.

    Parameters
    ----------
    img : array_like, (H, W) or (H, W, C)
        Converted to float32.
    size : (int, int)
        ``(width, height)`` of the result, in OpenCV's order.

    Returns
    -------
    numpy.ndarray
        float32, (height, width) or (height, width, C).
    """
    img = np.asarray(img, dtype=np.float32)
    if img.ndim not in (2, 3) or 0 in img.shape:
        raise ValueError(f"img: expected a non-empty (H, W) or (H, W, C) array, got shape "
                         f"{img.shape}")
    width, height = _positive_size(size)
    src_height, src_width = img.shape[:2]
    # OpenCV computes the coordinates in float32 when the source is a single row or column.
    single = src_height == 1 or src_width == 1
    x0, x1, wx = _linear_taps(src_width, width, single)
    y0, y1, wy = _linear_taps(src_height, height, single)
    extra = (None,) * (img.ndim - 2)
    wx = wx[(slice(None),) + extra]
    wy = wy[(slice(None), None) + extra]
    one = np.float32(1)
    rows = img[:, x0] * (one - wx) + img[:, x1] * wx
    return rows[y0] * (one - wy) + rows[y1] * wy


def _positive_size(size):
    try:
        width, height = (int(v) for v in size)
    except (TypeError, ValueError):
        raise ValueError(f"size: expected (width, height), got {size!r}") from None
    if width < 1 or height < 1:
        raise ValueError(f"size: width and height must be positive, got {size!r}")
    return width, height


def _linear_taps(src_len, dst_len, single):
    """Source indices (low, high) and float32 weights of ``high`` for each output position."""
    scale = 1.0 / (dst_len / src_len)
    coords = (np.arange(dst_len, dtype=np.float64) + 0.5) * scale - 0.5
    if single:
        coords = coords.astype(np.float32)
    low = np.floor(coords)
    weight = (coords - low).astype(np.float32)
    low = low.astype(np.intp)
    before = low < 0
    after = low >= src_len - 1
    weight[before | after] = 0
    low[before] = 0
    low[after] = src_len - 1
    high = np.minimum(low + 1, src_len - 1)
    return low, high, weight


# -- reading files ----------------------------------------------------------------------------

def load_image(path, size=None):
    """Read an image file into a float32 RGB array in [0, 1].

    Parameters
    ----------
    path : str or os.PathLike
        Any format Pillow reads (PNG, JPEG, BMP, WebP, ...). EXIF orientation is applied;
        an alpha channel is dropped; grey-scale and palette images are converted to RGB.
    size : int or (int, int), optional
        Resize to ``(size, size)`` or ``(width, height)`` with Pillow's bilinear filter
        (antialiased when shrinking, like torchvision's ``Resize`` on PIL images).

    Returns
    -------
    numpy.ndarray
        float32, (H, W, 3), values in [0, 1].

    Raises
    ------
    FileNotFoundError
        No file at ``path``.
    swiftcam.SwiftCAMIOError
        The file exists but is not an image Pillow can decode (an ``OSError``).
    """
    from PIL import Image

    with _open_image(path) as image:
        rgb = _decode_rgb(image, path)
    if size is not None:
        rgb = rgb.resize(_size_pair(size), Image.BILINEAR)
    return np.asarray(rgb, dtype=np.float32) / np.float32(255)


def _open_image(path):
    from PIL import Image

    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(errno.ENOENT, "No such image file", path)
    if os.path.isdir(path):
        raise IsADirectoryError(errno.EISDIR, "Is a directory, not an image file", path)
    try:
        return Image.open(path)
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as error:
        raise _unreadable(path, error) from None


def _decode_rgb(image, path):
    from PIL import Image, ImageOps

    try:
        image.load()
        image = ImageOps.exif_transpose(image)
        return image.convert("RGB")
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as error:
        raise _unreadable(path, error) from None


def _unreadable(path, error):
    from PIL import UnidentifiedImageError

    if isinstance(error, UnidentifiedImageError):
        reason = "not an image format Pillow can decode (PNG, JPEG, BMP, WebP, ...)"
    else:
        reason = str(error) or type(error).__name__
    return SwiftCAMIOError(f"{os.fspath(path)}: cannot read the image: {reason}")


def _size_pair(size):
    if isinstance(size, (int, np.integer)) and not isinstance(size, bool):
        size = (int(size), int(size))
    return _positive_size(size)
