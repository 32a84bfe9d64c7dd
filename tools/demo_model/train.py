"""Train swiftcam's demo model on the synthetic shapes dataset.

Usage (from the repository root)::

    .venv-torch/bin/python tools/demo_model/train.py

The script

1. streams training images from :mod:`synthetic_shapes` through a pool that
   is partly regenerated every epoch (each image lives ``--lifetime``
   epochs), so the network sees many fresh images at a bounded cost;
2. trains a narrow torchvision ResNet-18 (:mod:`model`) with AdamW, a
   warm-up + cosine schedule, label smoothing and horizontal flips, on
   ImageNet-normalised inputs (exactly torchvision's preprocessing), with a
   short curriculum (uncluttered images with larger targets first);
3. re-estimates the BatchNorm running statistics on fresh images so that the
   model is well calibrated in eval mode;
4. measures held-out accuracy on fresh ``test`` images and writes the
   artifacts to ``python/swiftcam/data``: ``demo_resnet.safetensors``,
   ``demo_labels.json``, ``demo_model.json`` and ``examples/``.

Everything is deterministic given ``--seed`` (single-threaded CPU run).
"""

import argparse
import hashlib
import math
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from safetensors.torch import save_file
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))

from model import build_model  # noqa: E402
from synthetic_shapes import (CLASS_NAMES, DEFAULT_SCALE_RANGE,  # noqa: E402
                              make_sample)

REPO = Path(__file__).resolve().parents[2]
DATA_DIR = REPO / "python" / "swiftcam" / "data"
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)
EXAMPLE_CLASSES = ("circle", "square", "triangle", "star", "cross", "heart")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--size", type=int, default=160,
                        help="input side in pixels")
    parser.add_argument("--layers", type=int, nargs=4, default=[2, 2, 2, 2])
    parser.add_argument("--width-divisor", type=int, default=4)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--pool", type=int, default=6144,
                        help="training images held in memory")
    parser.add_argument("--lifetime", type=int, default=3,
                        help="epochs each training image stays in the pool")
    parser.add_argument("--ramp-epochs", type=int, default=6,
                        help="curriculum: epochs until full difficulty")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--warmup-steps", type=int, default=100)
    parser.add_argument("--weight-decay", type=float, default=0.05)
    parser.add_argument("--label-smoothing", type=float, default=0.1)
    parser.add_argument("--calibration-images", type=int, default=2048)
    parser.add_argument("--test-images", type=int, default=2000)
    parser.add_argument("--out-dir", type=Path, default=DATA_DIR)
    return parser.parse_args(argv)


# --------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------

def generate(seed, split, start, count, size, clutter=1.0,
             scale_range=DEFAULT_SCALE_RANGE):
    """Images (N, H, W, 3) uint8, labels (N,) int64 and boxes (N, 4)."""
    samples = [make_sample(seed, start + i, split, size, scale_range,
                           clutter=clutter)
               for i in range(count)]
    images = np.stack([s.image for s in samples])
    labels = np.array([s.label for s in samples], dtype=np.int64)
    boxes = np.array([s.box for s in samples], dtype=np.int64)
    return images, labels, boxes


def to_tensor(images):
    """uint8 (N, H, W, 3) -> normalised float tensor (N, 3, H, W)."""
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float().div_(255.0)
    mean = torch.tensor(MEAN).view(1, 3, 1, 1)
    std = torch.tensor(STD).view(1, 3, 1, 1)
    return (x - mean) / std


def curriculum(epoch, ramp_epochs):
    """``(clutter, scale_range)`` for images generated at ``epoch``.

    Training starts on uncluttered images with larger targets and reaches
    the full difficulty of the held-out data after ``ramp_epochs``.
    """
    t = min(1.0, epoch / ramp_epochs) if ramp_epochs > 0 else 1.0
    easy_scale, full_scale = (0.45, 0.65), DEFAULT_SCALE_RANGE
    scale_range = tuple(e + (f - e) * t
                        for e, f in zip(easy_scale, full_scale))
    return t, scale_range


class TrainingPool:
    """In-memory training images, a slice of which is renewed every epoch."""

    def __init__(self, seed, size, pool, lifetime, ramp_epochs):
        self.seed, self.size = seed, size
        self.refresh = pool // lifetime
        self.ramp_epochs = ramp_epochs
        self.images, self.labels, _ = generate(
            seed, "train", 0, pool, size, *curriculum(0, ramp_epochs))
        self.next_index = pool
        self.cursor = 0

    def renew(self, epoch):
        """Replace the oldest ``pool / lifetime`` images by fresh ones."""
        stop = self.cursor + self.refresh
        images, labels, _ = generate(self.seed, "train", self.next_index,
                                     self.refresh, self.size,
                                     *curriculum(epoch, self.ramp_epochs))
        self.images[self.cursor:stop] = images
        self.labels[self.cursor:stop] = labels
        self.next_index += self.refresh
        self.cursor = stop % len(self.labels)

    def batches(self, batch_size, generator):
        """Shuffled, horizontally flipped mini-batches (x, y)."""
        order = torch.randperm(len(self.labels), generator=generator)
        for start in range(0, len(order) - batch_size + 1, batch_size):
            idx = order[start:start + batch_size].numpy()
            x = to_tensor(self.images[idx])
            flip = torch.rand(len(idx), generator=generator) < 0.5
            x[flip] = x[flip].flip(-1)
            yield x, torch.from_numpy(self.labels[idx])


# --------------------------------------------------------------------------
# Training
# --------------------------------------------------------------------------

def make_optimizer(model, args, total_steps):
    """AdamW (no weight decay on BN parameters and biases) with a short
    linear warm-up followed by cosine decay to zero."""
    decay, no_decay = [], []
    for param in model.parameters():
        (no_decay if param.ndim <= 1 else decay).append(param)
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": args.weight_decay},
         {"params": no_decay, "weight_decay": 0.0}], lr=args.lr)

    def factor(step):
        if step < args.warmup_steps:
            return (step + 1) / args.warmup_steps
        progress = (step - args.warmup_steps) / max(
            1, total_steps - args.warmup_steps)
        return 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
    return optimizer, scheduler


def train(model, pool, args):
    steps_per_epoch = len(pool.labels) // args.batch_size
    optimizer, scheduler = make_optimizer(
        model, args, steps_per_epoch * args.epochs)
    criterion = nn.CrossEntropyLoss(label_smoothing=args.label_smoothing)
    generator = torch.Generator().manual_seed(args.seed)
    for epoch in range(args.epochs):
        model.train()
        started, total, correct, loss_sum = time.time(), 0, 0, 0.0
        for x, y in pool.batches(args.batch_size, generator):
            logits = model(x)
            loss = criterion(logits, y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            loss_sum += loss.item() * len(y)
            correct += int((logits.argmax(1) == y).sum())
            total += len(y)
        print(f"epoch {epoch + 1:2d}/{args.epochs}"
              f"  loss {loss_sum / total:.3f}"
              f"  train acc {correct / total:.3f}"
              f"  lr {scheduler.get_last_lr()[0]:.2e}"
              f"  {time.time() - started:.0f}s", flush=True)
        if epoch + 1 < args.epochs:
            pool.renew(epoch + 1)


@torch.no_grad()
def recalibrate_batchnorm(model, images, batch_size=128):
    """Recompute BN running statistics as exact averages over ``images``."""
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.reset_running_stats()
            module.momentum = None  # cumulative moving average
    model.train()
    for start in range(0, len(images), batch_size):
        model(to_tensor(images[start:start + batch_size]))
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.momentum = 0.1  # torchvision's default again
    model.eval()


@torch.no_grad()
def predict(model, images, batch_size=200):
    """Softmax probabilities (N, classes) in eval mode."""
    model.eval()
    probs = [torch.softmax(model(to_tensor(images[i:i + batch_size])), 1)
             for i in range(0, len(images), batch_size)]
    return torch.cat(probs).numpy()


# --------------------------------------------------------------------------
# Artifacts
# --------------------------------------------------------------------------

def save_weights(model, path):
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(path), metadata={"format": "pt"})
    path.chmod(0o644)
    return hashlib.sha256(path.read_bytes()).hexdigest()


def save_examples(model, args, out_dir):
    """Save the first correctly classified held-out image of some classes."""
    out_dir.mkdir(parents=True, exist_ok=True)
    for old in out_dir.glob("*.png"):
        old.unlink()
    entries = []
    for name in EXAMPLE_CLASSES:
        label = CLASS_NAMES.index(name)
        for index in range(1000):
            sample = make_sample(args.seed, label * 1000 + index, "examples",
                                 args.size, label=label)
            probs = predict(model, sample.image[None])[0]
            if int(probs.argmax()) == label:
                break
        file_name = f"{name}_0.png"
        Image.fromarray(sample.image).save(out_dir / file_name)
        entries.append({"file": file_name, "label": label, "class": name,
                        "box": list(sample.box),
                        "probability": round(float(probs[label]), 4),
                        "sample_index": label * 1000 + index})
    manifest = {
        "split": "examples", "seed": args.seed,
        "image_size": [args.size, args.size],
        "box_format": "x0, y0, x1, y1 in pixels, x1/y1 exclusive",
        "selection": "first correctly classified held-out image per class",
        "examples": entries,
    }
    write_json(out_dir / "examples.json", manifest)


def write_json(path, payload):
    path.write_text(json.dumps(payload, indent=2) + "\n")


def model_card(args, accuracy, sha256):
    layers = list(args.layers)
    widths = [w // args.width_divisor for w in (64, 128, 256, 512)]
    return {
        "weights": "demo_resnet.safetensors",
        "weights_sha256": sha256,
        "labels": "demo_labels.json",
        "architecture": {
            "class": "torchvision.models.resnet.ResNet",
            "block": "BasicBlock",
            "layers": layers,
            "width_divisor": args.width_divisor,
            "stem_channels": 64 // args.width_divisor,
            "stage_channels": widths,
            "num_classes": len(CLASS_NAMES),
            "builder": "tools/demo_model/model.py:build_model",
            "cam_target_layers": {"last": "layer4", "earlier": "layer3"},
        },
        "input": {
            "size": [args.size, args.size],
            "channels": "RGB",
            "range": [0.0, 1.0],
            "mean": list(MEAN),
            "std": list(STD),
        },
        "dataset": {
            "generator": "tools/demo_model/synthetic_shapes.py",
            "seed": args.seed,
            "classes": list(CLASS_NAMES),
            "scale_range": list(DEFAULT_SCALE_RANGE),
        },
        "test_accuracy": round(accuracy, 4),
        "test_images": args.test_images,
        "training": {
            "optimizer": "AdamW",
            "schedule": f"linear warm-up ({args.warmup_steps} steps), "
                        f"cosine decay to 0",
            "lr": args.lr,
            "weight_decay": args.weight_decay,
            "label_smoothing": args.label_smoothing,
            "batch_size": args.batch_size,
            "epochs": args.epochs,
            "pool": args.pool,
            "lifetime_epochs": args.lifetime,
            "unique_training_images":
                args.pool + (args.epochs - 1) * (args.pool // args.lifetime),
            "augmentation": "random horizontal flip",
            "curriculum": f"clutter 0 -> 1 and target scale "
                          f"0.45-0.65 -> {DEFAULT_SCALE_RANGE[0]}-"
                          f"{DEFAULT_SCALE_RANGE[1]} over the first "
                          f"{args.ramp_epochs} epochs",
            "batchnorm": f"statistics recomputed on "
                         f"{args.calibration_images} fresh images",
            "threads": 1,
        },
    }


def main(argv=None):
    args = parse_args(argv)
    torch.set_num_threads(1)
    torch.manual_seed(args.seed)
    started = time.time()
    model = build_model(len(CLASS_NAMES), tuple(args.layers),
                        args.width_divisor)
    pool = TrainingPool(args.seed, args.size, args.pool, args.lifetime,
                        args.ramp_epochs)
    print(f"pool ready after {time.time() - started:.0f}s", flush=True)
    train(model, pool, args)
    del pool

    calibration, _, _ = generate(args.seed, "calibration", 0,
                                 args.calibration_images, args.size)
    recalibrate_batchnorm(model, calibration)
    test_images, test_labels, _ = generate(args.seed, "test", 0,
                                           args.test_images, args.size)
    accuracy = float((predict(model, test_images).argmax(1)
                      == test_labels).mean())
    seconds = time.time() - started
    print(f"held-out accuracy {accuracy:.4f} on {args.test_images} images"
          f"  ({seconds / 60:.1f} min)", flush=True)

    args.out_dir.mkdir(parents=True, exist_ok=True)
    sha256 = save_weights(model, args.out_dir / "demo_resnet.safetensors")
    write_json(args.out_dir / "demo_labels.json", list(CLASS_NAMES))
    write_json(args.out_dir / "demo_model.json",
               model_card(args, accuracy, sha256))
    save_examples(model, args, args.out_dir / "examples")
    print(f"wrote artifacts to {args.out_dir}")


if __name__ == "__main__":
    main()
