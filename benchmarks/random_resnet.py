"""Random torchvision-layout ResNet state dicts in pure NumPy, for benchmarks without torch.

The keys and shapes are exactly torchvision's (conv1.weight, bn1.running_mean, ...,
layer4.2.downsample.1.weight, fc.bias); convolutions get He-normal weights and batch norms
identity-like statistics, so activations stay in a sensible range through 50+ layers.
"""

import numpy as np

#: torchvision layouts: block type, blocks per stage, groups, width per group.
ARCHITECTURES = {
    "resnet18": ("basic", [2, 2, 2, 2], 1, 64),
    "resnet34": ("basic", [3, 4, 6, 3], 1, 64),
    "resnet50": ("bottleneck", [3, 4, 6, 3], 1, 64),
    "resnet101": ("bottleneck", [3, 4, 23, 3], 1, 64),
    "resnet152": ("bottleneck", [3, 8, 36, 3], 1, 64),
    "wide_resnet50_2": ("bottleneck", [3, 4, 6, 3], 1, 128),
    "resnext50_32x4d": ("bottleneck", [3, 4, 6, 3], 32, 4),
}


def random_state_dict(arch="resnet50", num_classes=1000, seed=0):
    """A dict name -> float32 array with torchvision's keys for ``arch``."""
    block, layers, groups, width_per_group = ARCHITECTURES[arch]
    rng = np.random.default_rng(seed)
    state = {}

    def conv(name, out_channels, in_channels, kernel):
        fan_in = in_channels * kernel * kernel
        state[f"{name}.weight"] = (rng.standard_normal((out_channels, in_channels, kernel, kernel))
                                   * np.sqrt(2.0 / fan_in)).astype(np.float32)

    def batch_norm(name, channels, gamma=1.0):
        state[f"{name}.weight"] = np.full(channels, gamma, np.float32)
        state[f"{name}.bias"] = np.zeros(channels, np.float32)
        state[f"{name}.running_mean"] = np.zeros(channels, np.float32)
        state[f"{name}.running_var"] = np.ones(channels, np.float32)

    conv("conv1", 64, 3, 7)
    batch_norm("bn1", 64)
    expansion = 1 if block == "basic" else 4
    in_planes = 64
    for stage, (planes, count) in enumerate(zip([64, 128, 256, 512], layers)):
        for index in range(count):
            prefix = f"layer{stage + 1}.{index}"
            stride = 2 if stage > 0 and index == 0 else 1
            out_planes = planes * expansion
            if block == "basic":
                conv(f"{prefix}.conv1", planes, in_planes, 3)
                batch_norm(f"{prefix}.bn1", planes)
                conv(f"{prefix}.conv2", planes, planes, 3)
                batch_norm(f"{prefix}.bn2", planes, gamma=0.2)
            else:
                width = int(planes * width_per_group / 64) * groups
                conv(f"{prefix}.conv1", width, in_planes, 1)
                batch_norm(f"{prefix}.bn1", width)
                conv(f"{prefix}.conv2", width, width // groups, 3)
                batch_norm(f"{prefix}.bn2", width)
                conv(f"{prefix}.conv3", out_planes, width, 1)
                batch_norm(f"{prefix}.bn3", out_planes, gamma=0.2)
            if stride != 1 or in_planes != out_planes:
                conv(f"{prefix}.downsample.0", out_planes, in_planes, 1)
                batch_norm(f"{prefix}.downsample.1", out_planes)
            in_planes = out_planes
    state["fc.weight"] = (rng.standard_normal((num_classes, in_planes))
                          / np.sqrt(in_planes)).astype(np.float32)
    state["fc.bias"] = np.zeros(num_classes, np.float32)
    return state
