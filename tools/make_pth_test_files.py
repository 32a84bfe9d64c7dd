"""Write the torch.save test files of python/tests/test_pth.py (python/tests/data/pth/).

Run with the torch venv from the repository root:

    .venv-torch/bin/python tools/make_pth_test_files.py

Every file is written by torch.save itself (the format swiftcam.pth reads without torch).
expected.npz holds the exact values each file must read back as (bfloat16 widened to float32)
and "manifest", a JSON string {file stem: {key, in order, DataParallel prefixes stripped: the
name of its array in expected.npz}} (values shared by several files are stored once), plus an
input batch ("input") and the logits torch computes for it with the tiny ResNet ("logits") and
with its float16 weights ("logits_float16"), for end-to-end checks through swiftcam.load.

The files are small (a ResNet with one BasicBlock per stage and widths divided by 16, 10
classes) and deterministic for a given torch version: the generator seeds torch's RNG.
"""

import argparse
import collections
import json
import sys
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torchvision.models.resnet import BasicBlock

sys.path.insert(0, str(Path(__file__).resolve().parent))
from small_resnet import SmallResNet, randomize_batch_norm  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = REPO_ROOT / "python" / "tests" / "data" / "pth"


def tiny_resnet(seed=0):
    torch.manual_seed(seed)
    model = SmallResNet(BasicBlock, [1, 1, 1, 1], divisor=16, num_classes=10)
    with torch.no_grad():
        randomize_batch_norm(model, num_batches_tracked=7)
    return model.eval()


def as_expected(value):
    """The array swiftcam.pth must return for a tensor."""
    value = value.detach()
    if value.dtype == torch.bfloat16:
        value = value.float()
    return value.resolve_neg().contiguous().numpy().copy()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args()
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    expected = {}
    manifest = {}  # file stem -> {key read back: name of its array in expected.npz}

    def save(name, obj, state_dict, strip=""):
        torch.save(obj, out / f"{name}.pth")
        entries = manifest[name] = {}
        for key, value in state_dict.items():
            key = key[len(strip):]
            array = as_expected(value)
            # Identical values (the same weights in several files) are stored once.
            shared = expected.get(f"resnet_tiny/{key}")
            if (shared is not None and shared.dtype == array.dtype
                    and shared.shape == array.shape and shared.tobytes() == array.tobytes()):
                entries[key] = f"resnet_tiny/{key}"
            else:
                entries[key] = f"{name}/{key}"
                expected[entries[key]] = array

    model = tiny_resnet()
    state = model.state_dict()

    # A bare state dict (an OrderedDict of tensors, with torch's _metadata attribute).
    save("resnet_tiny", state, state)

    # A training checkpoint; the optimizer's tensors are never read.
    momentum = collections.OrderedDict(
        (i, {"momentum_buffer": torch.full_like(p, 0.5)})
        for i, p in enumerate(list(model.parameters())[:2]))
    checkpoint = {
        "epoch": 3,
        "arch": "resnet_tiny",
        "best_acc1": 71.25,
        "state_dict": state,
        "optimizer": {
            "state": momentum,
            "param_groups": [{"lr": 0.1, "momentum": 0.9, "nesterov": False, "dampening": 0,
                              "weight_decay": 1e-4, "betas": (0.9, 0.999), "foreach": None,
                              "params": list(range(len(list(model.parameters()))))}],
        },
        "history": [1.5, 1.25, None, True, "text", b"bytes", (1, 2)],
    }
    save("checkpoint", checkpoint, state)

    # DataParallel's "module." prefix, directly and under a checkpoint's "model" key.
    wrapped = nn.DataParallel(model).state_dict()
    assert all(k.startswith("module.") for k in wrapped)
    save("dataparallel", wrapped, wrapped, strip="module.")
    save("model_key", {"model": wrapped, "epoch": 1}, wrapped, strip="module.")

    # nn.Parameter values (_rebuild_parameter), one with a Python attribute
    # (_rebuild_parameter_with_state) and a plain tensor with one (_rebuild_from_type_v2).
    parameters = collections.OrderedDict(model.named_parameters())
    tagged = nn.Parameter(torch.arange(6, dtype=torch.float32).reshape(2, 3))
    tagged.note = "a Python attribute"
    plain = torch.linspace(-1, 1, 5)
    plain.note = 7
    parameters["extra.tagged"] = tagged
    parameters["extra.plain"] = plain
    save("parameters", parameters, parameters)

    # Half and bfloat16 weights.
    half_model = tiny_resnet().half()
    save("float16", half_model.state_dict(), half_model.state_dict())
    bf16 = collections.OrderedDict(
        (key, value.to(torch.bfloat16)) for key, value in list(state.items())[:6]
        if value.is_floating_point())
    bf16["special"] = torch.tensor([0.0, -0.0, 1.0, -2.5, 3.140625, float("inf"), 1e-30,
                                    65504.0], dtype=torch.bfloat16)
    save("bfloat16", bf16, bf16)

    # Views sharing one storage: transposed, strided, offset, broadcast (stride 0), negative.
    base = torch.arange(60, dtype=torch.float32).reshape(3, 4, 5) / 7
    views = collections.OrderedDict([
        ("base", base),
        ("transposed", base.transpose(0, 2)),
        ("permuted", base.permute(1, 0, 2)),
        ("strided", base[:, ::2, 1:]),
        ("offset", base[1]),
        ("offset_column", base[2, :, 3]),
        ("expanded", base[0, 0, :3].unsqueeze(1).expand(3, 4)),
        ("negative", torch._neg_view(base[1, 1])),
        ("conv_weight_t", torch.randn(8, 4, 3, 3).transpose(0, 1)),
    ])
    assert not views["transposed"].is_contiguous() and views["negative"].is_neg()
    save("views", views, views)

    # Every dtype the reader supports, 0-d and empty tensors.
    dtypes = collections.OrderedDict([
        ("float64", torch.linspace(-3, 3, 7, dtype=torch.float64)),
        ("int64", torch.tensor([-(2 ** 40), -1, 0, 2 ** 62], dtype=torch.int64)),
        ("int32", torch.tensor([-(2 ** 31), 7, 2 ** 31 - 1], dtype=torch.int32)),
        ("int16", torch.tensor([-300, 300], dtype=torch.int16)),
        ("int8", torch.tensor([-128, 127], dtype=torch.int8)),
        ("uint8", torch.tensor([0, 200, 255], dtype=torch.uint8)),
        ("bool", torch.tensor([True, False, True])),
        ("uint16", torch.tensor([1, 40000, 65535], dtype=torch.int32).to(torch.uint16)),
        ("scalar", torch.tensor(2.5)),
        ("num_batches_tracked", torch.tensor(12)),
        ("empty", torch.zeros(0, 3)),
        ("transposed_int", torch.arange(6, dtype=torch.int64).reshape(2, 3).t()),
    ])
    save("dtypes", dtypes, dtypes)

    # Formats swiftcam refuses: the legacy (pre-1.6) format and a whole pickled module.
    torch.save({"w": torch.ones(2)}, out / "legacy.pth", _use_new_zipfile_serialization=False)
    torch.manual_seed(1)
    torch.save(nn.Sequential(nn.Conv2d(3, 2, 1), nn.ReLU()), out / "whole_model.pth")

    # End-to-end references: logits of the tiny model in float32 and with float16 weights.
    generator = torch.Generator().manual_seed(5)
    x = torch.randn(2, 3, 40, 48, generator=generator)
    with torch.no_grad():
        expected["input"] = x.numpy().copy()
        expected["logits"] = model(x).numpy().copy()
        expected["logits_float16"] = tiny_resnet().half().float()(x).numpy().copy()
    expected["manifest"] = np.array(json.dumps(manifest))
    np.savez(out / "expected.npz", **expected)

    total = sum(p.stat().st_size for p in out.iterdir())
    print(f"wrote {len(list(out.iterdir()))} files, {total / 1024:.0f} KiB, to {out}")


if __name__ == "__main__":
    main()
