"""The ``swiftcam`` command line (``python -m swiftcam`` or the ``swiftcam`` script).

    swiftcam explain IMAGE_OR_DIR... [--weights W.safetensors] [--labels LABELS.json]
                     [--method gradcam] [--layer layer4] [--top-k 3] [--size 224]
                     [--out DIR] [--json] [--examples]

For every image it writes ``<out>/<image stem>.png``: one row with the image and one captioned
overlay per top class (the panel of :meth:`swiftcam.explanation.Explanation.save`); then
``<out>/summary.json`` with, per image, the file, the top classes, their labels and
probabilities and the overlay file. Without ``--weights`` the demo model shipped in the package
is used (with its labels, input size and normalisation); a model with 1000 classes is given the
ImageNet class names unless ``--labels`` says otherwise. Directories are scanned (not
recursively) for .png, .jpg, .jpeg, .bmp and .webp files.

``--method`` takes every name :func:`swiftcam.explanation.method_names` lists. ``fullgrad`` uses
every layer with a bias, so ``--layer`` is ignored with it (silently; the summary's ``layer`` is
null). ``scorecam`` and ``ablationcam`` run a forward pass per channel of the layer (of the
whole network, or of the part above the layer): slower.

Exit status: 0 when every image was explained, 1 when some could not be read or explained
(the others are still written), 2 for a usage error (bad option, model or layer).
"""

import argparse
import json
import os
import sys
from pathlib import Path

__all__ = ["main", "build_parser", "IMAGE_SUFFIXES"]

#: File suffixes picked up when a directory is given.
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp")
#: Above this many images, progress is reported on stderr.
PROGRESS_THRESHOLD = 5
SUMMARY_FILE = "summary.json"
#: Models with this many classes get the ImageNet class names when --labels is not given.
IMAGENET_CLASSES = 1000
IMAGENET_LABELS_FILE = Path(__file__).resolve().parent / "data" / "imagenet_classes.json"


class UsageError(Exception):
    """A problem with the command line itself (exit status 2)."""


# -- arguments --------------------------------------------------------------------------------

def build_parser():
    """The argument parser of the ``swiftcam`` command."""
    from . import __version__

    parser = argparse.ArgumentParser(
        prog="swiftcam", description="Grad-CAM explanations for torchvision ResNets, computed "
        "by a Swift engine.")
    parser.add_argument("--version", action="version", version=f"swiftcam {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    explain = commands.add_parser(
        "explain", help="write CAM overlays and a summary for images",
        description="Explain a ResNet's top classes on images: writes one PNG per image "
        "(the image and one overlay per class, side by side) and summary.json into --out.")
    explain.add_argument("inputs", nargs="*", metavar="IMAGE_OR_DIR",
                         help="image files, or directories to scan for images")
    explain.add_argument("--weights", metavar="W",
                         help="a torchvision ResNet state dict as .safetensors (default: the "
                         "demo model shipped with swiftcam)")
    explain.add_argument("--labels", metavar="LABELS.json",
                         help="class names: a JSON list, or an object mapping index to name "
                         "(default: the demo's labels, or ImageNet's for 1000 classes)")
    explain.add_argument("--method", default="gradcam", type=_method, metavar="METHOD",
                         help=f"CAM method, one of {', '.join(_method_names())} (any case; "
                         "default: gradcam; scorecam and ablationcam run a forward pass per "
                         "channel of the layer and are slower)")
    explain.add_argument("--layer", default="layer4",
                         help="target layer (default: layer4; ignored by fullgrad, which uses "
                         "every layer with a bias)")
    explain.add_argument("--top-k", type=_positive_int, default=3, metavar="K",
                         help="explain the K highest-scoring classes (default: 3)")
    explain.add_argument("--size", type=_size, metavar="N|WxH",
                         help="resize images to NxN (or WxH) first (default: the demo "
                         "model's input size, or no resizing with --weights)")
    explain.add_argument("--out", default="swiftcam-out", metavar="DIR",
                         help="output directory (default: ./swiftcam-out)")
    explain.add_argument("--json", action="store_true",
                         help="print the summary as JSON on stdout instead of prose")
    explain.add_argument("--examples", action="store_true",
                         help="also explain the example images shipped with the demo model")
    convert = commands.add_parser(
        "convert", help="convert torch.save weights (.pth) to .safetensors",
        description="Read a torch.save file (a state dict or a checkpoint holding one) without "
        "torch, check that it is a ResNet swiftcam can load, and write it as .safetensors.")
    convert.add_argument("source", metavar="IN", help="weights: .pth/.pt, or .safetensors")
    convert.add_argument("destination", metavar="OUT", help="the .safetensors file to write")
    return parser


def _method_names():
    from .explanation import method_names

    return method_names()


def _method(text):
    """A method name normalised as :func:`swiftcam.explanation.cam_class` compares it."""
    from .errors import InvalidInputError
    from .explanation import method_name

    try:
        return method_name(text)
    except InvalidInputError:
        raise argparse.ArgumentTypeError(
            f"unknown method {text!r}; choose one of {', '.join(_method_names())}") from None


def _positive_int(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _size(text):
    parts = text.lower().split("x")
    if len(parts) not in (1, 2):
        raise argparse.ArgumentTypeError(f"expected N or WxH, got {text!r}")
    values = tuple(_positive_int(part) for part in parts)
    return values * 2 if len(values) == 1 else values


# -- inputs -----------------------------------------------------------------------------------

def collect_images(inputs):
    """Expand files and directories into a list of image paths, plus problems found.

    Returns
    -------
    images : list of (Path, dict)
        Each image and extra summary fields (empty here).
    problems : list of (str, str)
        (input, message) for inputs that do not exist or directories without images.
    """
    images, problems = [], []
    for text in inputs:
        path = Path(text)
        if path.is_dir():
            found = sorted(p for p in path.iterdir()
                           if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
            if not found:
                problems.append((text, f"no {'/'.join(IMAGE_SUFFIXES)} files in this directory"))
            images.extend((p, {}) for p in found)
        elif path.exists():
            images.append((path, {}))
        else:
            problems.append((text, "no such file or directory"))
    return images, problems


def example_inputs():
    """The demo's example images as (path, {"expected": class name}) pairs."""
    from . import demo

    return [(Path(entry["path"]), {"expected": entry.get("class")})
            for entry in demo.example_images()]


# -- the model --------------------------------------------------------------------------------

class Setup:
    """The model and the preprocessing the run uses."""

    def __init__(self, model, source, labels, size, mean, std):
        self.model = model
        self.source = source
        self.labels = labels
        self.size = size
        self.mean = mean
        self.std = std


def load_setup(args):
    """Load the model from ``--weights`` or the demo files; raises UsageError."""
    from . import demo, load
    from .errors import SwiftCAMError
    from .explanation import read_labels
    from .utils.image import IMAGENET_MEAN, IMAGENET_STD

    try:
        labels = read_labels(args.labels) if args.labels else None
    except (OSError, ValueError, TypeError) as error:
        raise UsageError(f"cannot read --labels {args.labels}: {error}") from None
    if args.weights:
        try:
            model = load(args.weights)
        except (SwiftCAMError, OSError) as error:
            raise UsageError(f"cannot load --weights {args.weights}: {error}") from None
        if labels is None and model.num_classes == IMAGENET_CLASSES:
            labels = _imagenet_labels()
        return Setup(model, args.weights, labels, args.size, IMAGENET_MEAN, IMAGENET_STD)
    try:
        model = demo.load_demo_model()
        card = demo.demo_card()
        labels = labels if labels is not None else demo.demo_labels()
    except FileNotFoundError as error:
        raise UsageError(f"the demo model is not installed ({error.filename} is missing); "
                         "pass --weights W.safetensors") from None
    except (SwiftCAMError, OSError, ValueError) as error:
        raise UsageError(f"cannot load the demo model: {error}; pass --weights "
                         "W.safetensors") from None
    inputs = card.get("input", {})
    size = args.size
    if size is None and "size" in inputs:
        size = tuple(int(v) for v in inputs["size"])
    return Setup(model, "demo", labels, size, inputs.get("mean", IMAGENET_MEAN),
                 inputs.get("std", IMAGENET_STD))


def _imagenet_labels():
    """The ImageNet-1k class names shipped with swiftcam, or None if the file is absent."""
    try:
        names = json.loads(IMAGENET_LABELS_FILE.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return names if len(names) == IMAGENET_CLASSES else None


# -- running ----------------------------------------------------------------------------------

def run_explain(args, stdout, stderr):
    """Explain every image of ``args``; returns the exit status."""
    from .errors import SwiftCAMError

    images, problems = collect_images(args.inputs)
    if args.examples:
        try:
            images.extend(example_inputs())
        except FileNotFoundError as error:
            raise UsageError(f"--examples: the demo files are not installed ({error.filename} "
                             "is missing)") from None
        except (SwiftCAMError, OSError, ValueError, KeyError) as error:
            raise UsageError(f"--examples: cannot read the examples manifest: {error}") from None
    if not images and not problems:
        raise UsageError("no images given: pass image files or directories, or --examples")
    setup = load_setup(args)
    try:
        return _explain_all(args, setup, images, problems, stdout, stderr)
    finally:
        setup.model.close()


def _explain_all(args, setup, images, problems, stdout, stderr):
    from .errors import SwiftCAMError
    from .explanation import explain, make_cam

    model = setup.model
    try:
        make_cam(args.method, model, args.layer)
    except SwiftCAMError as error:
        raise UsageError(str(error)) from None
    top_k = min(args.top_k, model.num_classes)
    out_dir = Path(args.out)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise UsageError(f"cannot create --out {out_dir}: {error}") from None

    for text, message in problems:
        _report_error(stderr, text, message)
    errors = [{"file": text, "error": message} for text, message in problems]
    records = []
    names = _OutputNames()
    for index, (path, extra) in enumerate(images):
        if len(images) > PROGRESS_THRESHOLD:
            print(f"[{index + 1}/{len(images)}] {path}", file=stderr, flush=True)
        try:
            result = explain(model, path, method=args.method, layer=args.layer, top_k=top_k,
                             size=setup.size, labels=setup.labels, mean=setup.mean,
                             std=setup.std)
        except (SwiftCAMError, OSError, ValueError) as error:
            _report_error(stderr, str(path), str(error))
            errors.append({"file": str(path), "error": str(error)})
            continue
        overlay = out_dir / names.take(path.stem)
        result.save(overlay)
        records.append(_record(path, result, overlay, extra))

    summary = _summary(args, setup, top_k, records, errors)
    summary_path = out_dir / SUMMARY_FILE
    summary_path.write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    if args.json:
        print(json.dumps(summary, indent=2), file=stdout)
    else:
        _print_prose(stdout, records, errors, out_dir, summary_path)
    return 1 if errors else 0


class _OutputNames:
    """Unique ``<stem>.png`` names within one run (``<stem>-2.png`` on a clash)."""

    def __init__(self):
        self._taken = {SUMMARY_FILE.lower()}

    def take(self, stem):
        name, number = f"{stem}.png", 1
        while name.lower() in self._taken:
            number += 1
            name = f"{stem}-{number}.png"
        self._taken.add(name.lower())
        return name


def _record(path, result, overlay, extra):
    record = {
        "file": str(path),
        "overlay": str(overlay),
        "classes": list(result.classes),
        "labels": list(result.class_names),
        "scores": [round(s, 6) for s in result.scores],
    }
    record.update({k: v for k, v in extra.items() if v is not None})
    return record


def _summary(args, setup, top_k, records, errors):
    from . import __version__
    from .explanation import LAYERLESS_METHODS, cam_class

    return {
        "swiftcam": __version__,
        "model": setup.source,
        "method": args.method,
        "layer": None if issubclass(cam_class(args.method), LAYERLESS_METHODS) else args.layer,
        "top_k": top_k,
        "size": list(setup.size) if setup.size else None,
        "images": records,
        "errors": errors,
    }


def _report_error(stderr, file, message):
    if not message.startswith(file):
        message = f"{file}: {message}"
    print(f"swiftcam: error: {message}", file=stderr, flush=True)


def _print_prose(stdout, records, errors, out_dir, summary_path):
    for record in records:
        tops = ", ".join(f"{label} {100 * score:.1f}%"
                         for label, score in zip(record["labels"], record["scores"]))
        print(f"{record['file']}: {tops} -> {record['overlay']}", file=stdout)
    count = len(records)
    print(f"Wrote {count} overlay image{'s' if count != 1 else ''} and {summary_path.name} to "
          f"{os.fspath(out_dir)}{os.sep}", file=stdout)
    if errors:
        print(f"{len(errors)} input{'s' if len(errors) != 1 else ''} failed (see above).",
              file=stdout)


def run_convert(args, stdout, stderr):
    """Convert ``args.source`` to ``args.destination``; returns the exit status."""
    from .errors import SwiftCAMError
    from .model import load

    try:
        with load(args.source) as model:
            model.save(args.destination)
    except (SwiftCAMError, OSError) as error:
        _report_error(stderr, args.source, str(error))
        return 1
    print(f"wrote {args.destination} ({model.arch}, {model.num_classes} classes)", file=stdout)
    return 0


# -- entry point ------------------------------------------------------------------------------

def main(argv=None):
    """Run the ``swiftcam`` command; returns the exit status.

    Parameters
    ----------
    argv : list of str, optional
        The arguments (default: ``sys.argv[1:]``).
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "explain":
            return run_explain(args, sys.stdout, sys.stderr)
        if args.command == "convert":
            return run_convert(args, sys.stdout, sys.stderr)
    except UsageError as error:
        parser.exit(2, f"swiftcam: error: {error}\n")
    except KeyboardInterrupt:
        return 130
    parser.error(f"unknown command {args.command!r}")
    return 2
