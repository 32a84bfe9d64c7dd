"""Measure how well CAM heatmaps of the demo model localise the target.

Usage (from the repository root)::

    .venv-torch/bin/python tools/demo_model/evaluate.py [--images 1000]

For held-out images of the synthetic shapes dataset (the ``test`` split that
``train.py`` also uses for its accuracy, never seen in training) the script
computes, per CAM method and target layer, with the ground-truth class as
target:

* **pointing game** - share of images whose heatmap maximum (the heatmap is
  resized to the input size) lies inside the target's bounding box, strict
  (no tolerance).  Ties - the plateaus of equal maxima that bilinear
  upsampling makes at the border - go to the maximal pixel nearest to the
  heatmap's centre of mass (:func:`peak_location`).  Two variants are shown
  as well: plain ``np.argmax`` (first maximum in row-major order, which
  favours the top-left end of a plateau) and the original protocol's 15 px
  tolerance;
* **energy in box** - mean share of the heatmap's total mass inside the box.

Methods evaluated at each of ``LAYERS``: ``LAYER_METHODS``; FullGrad, which
uses every layer with a bias whatever the target layers, once (``layer``
column "all bias layers").

A "centre point / uniform map" baseline row shows what a map that ignores the
image would score (the targets are large, so the centre is often inside).
Results are printed as a markdown table.

The CAM implementation is a *backend*: a function
``backend(model, layer_name, method, inputs, labels) -> (N, H, W) array``
(``layer_name`` is None for FullGrad).  The default uses pytorch-grad-cam;
``--backend module:function`` plugs in another one (e.g. swiftcam's) without
touching the metrics.  ``--methods`` and ``--layers`` evaluate a subset,
``--images`` fewer images (always the first ones of the same sequence).
"""

import argparse
import importlib
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file

sys.path.insert(0, str(Path(__file__).resolve().parent))

from model import build_model  # noqa: E402
from train import DATA_DIR, generate, to_tensor  # noqa: E402

#: Methods evaluated at every layer of ``LAYERS``, in table order.
LAYER_METHODS = ("GradCAM", "GradCAM++", "LayerCAM", "XGradCAM", "HiResCAM",
                 "EigenCAM", "ScoreCAM", "AblationCAM")
#: Methods that ignore the target layer: one row each, after the others.
LAYERLESS_METHODS = ("FullGrad",)
METHODS = LAYER_METHODS + LAYERLESS_METHODS
LAYERS = ("layer4", "layer3")
LAYERLESS = "all bias layers"  # the layer column of LAYERLESS_METHODS
#: Masked (ScoreCAM) or ablated (AblationCAM) copies per forward pass.
PERTURBATION_BATCH = 32
TOLERANCE = 15.0  # pixels, as in the original pointing game protocol


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=DATA_DIR,
                        help="folder with demo_resnet.safetensors etc.")
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--batch-size", type=int, default=50)
    parser.add_argument("--backend", default=None,
                        help="CAM backend as module:function "
                             "(default: pytorch-grad-cam)")
    parser.add_argument("--methods", type=_names(METHODS),
                        default=METHODS, metavar="M1,M2",
                        help="comma-separated subset of: " + ", ".join(METHODS))
    parser.add_argument("--layers", type=_names(LAYERS), default=LAYERS,
                        metavar="L1,L2",
                        help="comma-separated subset of: " + ", ".join(LAYERS))
    return parser.parse_args(argv)


def _names(choices):
    """argparse type: a comma-separated subset of ``choices``, in their order."""
    def parse(text):
        names = [name.strip() for name in text.split(",") if name.strip()]
        unknown = [name for name in names if name not in choices]
        if unknown or not names:
            raise argparse.ArgumentTypeError(
                f"unknown {', '.join(unknown) or 'empty list'}; choose from "
                f"{', '.join(choices)}")
        return tuple(name for name in choices if name in names)
    return parse


# --------------------------------------------------------------------------
# CAM backends
# --------------------------------------------------------------------------

def pytorch_grad_cam_backend(model, layer_name, method, inputs, labels):
    """Heatmaps (N, H, W) in [0, 1] from pytorch-grad-cam."""
    import contextlib
    import io

    import pytorch_grad_cam as reference
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    names = {"GradCAM++": "GradCAMPlusPlus"}
    cam_class = getattr(reference, names.get(method, method))
    layers = [] if layer_name is None else [getattr(model, layer_name)]
    targets = [ClassifierOutputTarget(int(label)) for label in labels]
    with cam_class(model=model, target_layers=layers) as cam:
        if method in ("ScoreCAM", "AblationCAM"):
            cam.batch_size = PERTURBATION_BATCH
        # ScoreCAM and AblationCAM draw tqdm progress bars on stderr.
        with contextlib.redirect_stderr(io.StringIO()):
            return cam(input_tensor=inputs, targets=targets)


def load_backend(spec):
    if spec is None:
        return pytorch_grad_cam_backend
    module_name, function_name = spec.split(":")
    return getattr(importlib.import_module(module_name), function_name)


# --------------------------------------------------------------------------
# Metrics
# --------------------------------------------------------------------------

def inside(box, x, y, tolerance=0.0):
    """Is pixel ``(x, y)`` within ``tolerance`` pixels of the box?"""
    x0, y0, x1, y1 = box
    dx = max(x0 - x, 0, x - (x1 - 1))
    dy = max(y0 - y, 0, y - (y1 - 1))
    return dx * dx + dy * dy <= tolerance * tolerance


def peak_location(heatmap):
    """``(x, y)`` of the heatmap maximum, with a well-defined tie-break.

    Bilinear upsampling turns a border cell of a coarse map into a plateau
    of exactly equal maxima.  Of all maximal pixels, the one nearest to the
    heatmap's centre of mass is returned; for a border plateau that is its
    inner end, i.e. where the coarse cell is sampled.
    """
    ys, xs = np.nonzero(heatmap >= heatmap.max())
    if len(xs) == 1 or heatmap.sum() <= 0:
        return int(xs[0]), int(ys[0])
    weights = heatmap / heatmap.sum()
    cy = float((weights.sum(axis=1) * np.arange(heatmap.shape[0])).sum())
    cx = float((weights.sum(axis=0) * np.arange(heatmap.shape[1])).sum())
    nearest = np.argmin((xs - cx) ** 2 + (ys - cy) ** 2)
    return int(xs[nearest]), int(ys[nearest])


def first_argmax(heatmap):
    """``(x, y)`` of plain ``np.argmax`` (first maximum in row-major order)."""
    y, x = np.unravel_index(np.argmax(heatmap), heatmap.shape)
    return int(x), int(y)


def pointing_hits(heatmaps, boxes, locate=peak_location, tolerance=0.0):
    """1.0 where the heatmap's peak is in the box (0 for empty maps)."""
    hits = []
    for heatmap, box in zip(heatmaps, boxes):
        x, y = locate(heatmap)
        hits.append(float(heatmap.max() > 0
                          and inside(box, x, y, tolerance)))
    return np.array(hits)


def energy_in_box(heatmaps, boxes):
    """Share of each heatmap's mass inside its box (0 for empty maps)."""
    shares = []
    for heatmap, (x0, y0, x1, y1) in zip(heatmaps, boxes):
        total = float(heatmap.sum())
        part = float(heatmap[y0:y1, x0:x1].sum())
        shares.append(part / total if total > 0 else 0.0)
    return np.array(shares)


def baseline_scores(boxes, size):
    """Scores of a map peaking at the image centre, energy of a uniform map."""
    centre = size // 2
    strict = np.mean([inside(box, centre, centre) for box in boxes])
    tolerant = np.mean([inside(box, centre, centre, TOLERANCE)
                        for box in boxes])
    areas = [(x1 - x0) * (y1 - y0) / size ** 2 for x0, y0, x1, y1 in boxes]
    return {"pointing": float(strict), "argmax": float(strict),
            "tolerant": float(tolerant), "energy": float(np.mean(areas))}


# --------------------------------------------------------------------------
# Driver
# --------------------------------------------------------------------------

def load_model(data_dir):
    card = json.loads((data_dir / "demo_model.json").read_text())
    arch = card["architecture"]
    model = build_model(arch["num_classes"], tuple(arch["layers"]),
                        arch["width_divisor"])
    model.load_state_dict(load_file(str(data_dir / card["weights"])))
    return model.eval(), card


def score_maps(maps, boxes):
    """Per-image scores of one batch of heatmaps."""
    return {
        "pointing": pointing_hits(maps, boxes),
        "argmax": pointing_hits(maps, boxes, locate=first_argmax),
        "tolerant": pointing_hits(maps, boxes, tolerance=TOLERANCE),
        "energy": energy_in_box(maps, boxes),
    }


def evaluate(model, backend, images, labels, boxes, batch_size,
             methods=METHODS, layers=LAYERS):
    """{(method, layer): {score name: mean}} over all images.

    The layer of a method in ``LAYERLESS_METHODS`` is ``LAYERLESS``; the
    backend gets None as its layer name.
    """
    runs = [(method, layer) for layer in layers for method in LAYER_METHODS
            if method in methods]
    runs += [(method, None) for method in LAYERLESS_METHODS
             if method in methods]
    results = {}
    for method, layer in runs:
        started = time.time()
        parts = []
        for start in range(0, len(images), batch_size):
            stop = start + batch_size
            maps = backend(model, layer, method,
                           to_tensor(images[start:stop]),
                           labels[start:stop])
            parts.append(score_maps(maps, boxes[start:stop]))
        scores = results[method, layer or LAYERLESS] = {
            name: float(np.concatenate([p[name] for p in parts]).mean())
            for name in parts[0]}
        print(f"{table_row(method, layer or LAYERLESS, scores)} "
              f"({time.time() - started:.0f}s)", file=sys.stderr, flush=True)
    return results


def markdown_table(results, baseline):
    lines = ["| method | layer | pointing game | pointing, np.argmax "
             f"| pointing, {TOLERANCE:.0f} px tolerance | energy in box |",
             "| --- | --- | ---: | ---: | ---: | ---: |"]
    rows = [(method, layer, scores)
            for (method, layer), scores in results.items()]
    rows.append(("centre point / uniform map (baseline)", "-", baseline))
    lines.extend(table_row(*row) for row in rows)
    return "\n".join(lines)


def table_row(method, layer, scores):
    """One markdown table row."""
    return (f"| {method} | {layer} | {scores['pointing']:.1%} "
            f"| {scores['argmax']:.1%} | {scores['tolerant']:.1%} "
            f"| {scores['energy']:.1%} |")


def main(argv=None):
    args = parse_args(argv)
    torch.set_num_threads(1)
    started = time.time()
    model, card = load_model(args.data_dir)
    size = card["input"]["size"][0]
    seed = card["dataset"]["seed"]
    images, labels, boxes = generate(seed, "test", 0, args.images, size)
    with torch.no_grad():
        logits = torch.cat([model(to_tensor(images[i:i + 200]))
                            for i in range(0, len(images), 200)])
    accuracy = float((logits.argmax(1).numpy() == labels).mean())
    results = evaluate(model, load_backend(args.backend), images, labels,
                       boxes, args.batch_size, args.methods, args.layers)
    print(f"{args.images} held-out images ({size}x{size}, seed {seed}), "
          f"accuracy {accuracy:.1%}, targets = ground-truth class\n")
    print(markdown_table(results, baseline_scores(boxes, size)))
    print(f"\n({time.time() - started:.0f}s)")


if __name__ == "__main__":
    main()
