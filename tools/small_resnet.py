"""Reduced-width torchvision ResNets for swiftcam's reference fixtures.

torchvision's ``ResNet`` hard-codes the stage widths 64/128/256/512.  The
fixtures need networks with exactly torchvision's module tree and state-dict
key names (so that swiftcam's torchvision weight loader is exercised) but
with far fewer channels, so that the fixture files stay small.

``SmallResNet`` subclasses ``torchvision.models.resnet.ResNet`` and uses
torchvision's own ``BasicBlock`` / ``Bottleneck``; only the widths change:

* the stem has ``64 // divisor`` channels,
* stage ``s`` is built with ``planes = (64 * 2**(s-1)) // divisor``,
* ``fc`` takes ``512 // divisor * block.expansion`` features.

Everything else (7x7/2 stem conv without bias, 3x3/2 max-pool, stride on the
3x3 conv of a Bottleneck, downsample = 1x1 conv + BN, ``groups`` and
``width_per_group``) is torchvision's code, untouched.
"""

import torch
from torch import nn
from torchvision.models.resnet import BasicBlock, Bottleneck, ResNet

__all__ = [
    "BLOCKS",
    "SmallResNet",
    "randomize_batch_norm",
    "reference_resnet",
]

BLOCKS = {"basic": BasicBlock, "bottleneck": Bottleneck}


class SmallResNet(ResNet):
    """torchvision ResNet whose every width is divided by ``divisor``."""

    def __init__(self, block, layers, divisor, num_classes=1000, groups=1,
                 width_per_group=64):
        if 64 % divisor != 0:
            raise ValueError("divisor must divide 64")
        # Read by _make_layer, which ResNet.__init__ calls.  A plain int may
        # be set on a Module before Module.__init__ has run.
        self.width_divisor = divisor
        self._stages_built = 0
        super().__init__(block, layers, num_classes=num_classes,
                         groups=groups, width_per_group=width_per_group)

        # ResNet.__init__ built the stem and the classifier at full width;
        # replace them with narrow ones, initialised the way torchvision
        # initialises its modules (kaiming-normal fan_out convs, BN 1/0,
        # nn.Linear's default init).
        stem = 64 // divisor
        self.conv1 = nn.Conv2d(3, stem, kernel_size=7, stride=2, padding=3,
                               bias=False)
        nn.init.kaiming_normal_(self.conv1.weight, mode="fan_out",
                                nonlinearity="relu")
        self.bn1 = self._norm_layer(stem)
        self.fc = nn.Linear(512 // divisor * block.expansion, num_classes)

    def _make_layer(self, block, planes, blocks, stride=1, dilate=False):
        if self._stages_built == 0:
            # ResNet.__init__ set self.inplanes = 64 for the full-width stem.
            self.inplanes = 64 // self.width_divisor
        self._stages_built += 1
        return super()._make_layer(block, planes // self.width_divisor,
                                   blocks, stride=stride, dilate=dilate)


def reference_resnet(block, layers, num_classes, groups=1,
                     width_per_group=64):
    """Full-width torchvision ResNet of the same topology (for key checks)."""
    return ResNet(block, layers, num_classes=num_classes, groups=groups,
                  width_per_group=width_per_group)


@torch.no_grad()
def randomize_batch_norm(model, num_batches_tracked):
    """Give every BatchNorm2d non-trivial affine parameters and statistics.

    running_mean ~ N(0, 0.2), running_var ~ U(0.5, 2), weight ~ U(0.5, 1.5),
    bias ~ N(0, 0.2); draws come from the global torch RNG in module order.
    """
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.normal_(0.0, 0.2)
            module.running_var.uniform_(0.5, 2.0)
            module.weight.uniform_(0.5, 1.5)
            module.bias.normal_(0.0, 0.2)
            module.num_batches_tracked.fill_(num_batches_tracked)
