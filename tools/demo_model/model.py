"""Narrow torchvision ResNet used as swiftcam's demo model.

The network is a genuine :class:`torchvision.models.resnet.ResNet` with
:class:`~torchvision.models.resnet.BasicBlock`; only the channel widths are
divided by ``width_divisor``.  Module structure and state-dict keys are
therefore identical to torchvision's (``conv1``, ``bn1``, ``layer1.0.conv1``,
..., ``layer2.0.downsample.0``, ..., ``fc``), so every tool that understands
a torchvision ResNet (target layer ``model.layer4[-1]`` etc.) works unchanged.
"""

from torch import nn
from torchvision.models.resnet import BasicBlock, ResNet


class NarrowResNet(ResNet):
    """torchvision ResNet whose stage widths are ``64/128/256/512 // d``."""

    def __init__(self, layers=(2, 2, 2, 2), num_classes=8,
                 width_divisor=4, zero_init_residual=False):
        self.width_divisor = width_divisor
        # ResNet.__init__ builds the full-width stem, then calls _make_layer,
        # which reads self.inplanes; the narrowed _make_layer below keeps
        # the bookkeeping consistent with the narrow stem set up afterwards.
        self._narrow_inplanes = 64 // width_divisor
        super().__init__(BasicBlock, list(layers), num_classes=num_classes,
                         zero_init_residual=zero_init_residual)
        stem = 64 // width_divisor
        self.conv1 = nn.Conv2d(3, stem, kernel_size=7, stride=2, padding=3,
                               bias=False)
        self.bn1 = nn.BatchNorm2d(stem)
        self.fc = nn.Linear(512 // width_divisor * BasicBlock.expansion,
                            num_classes)
        self._init_new_modules()

    def _make_layer(self, block, planes, blocks, stride=1, dilate=False):
        if planes == 64:  # first stage: start from the narrow stem width
            self.inplanes = self._narrow_inplanes
        return super()._make_layer(block, planes // self.width_divisor,
                                   blocks, stride=stride, dilate=dilate)

    def _init_new_modules(self):
        """Match torchvision's initialisation for the replaced modules."""
        nn.init.kaiming_normal_(self.conv1.weight, mode="fan_out",
                                nonlinearity="relu")
        nn.init.ones_(self.bn1.weight)
        nn.init.zeros_(self.bn1.bias)


def build_model(num_classes=8, layers=(2, 2, 2, 2), width_divisor=4,
                zero_init_residual=False):
    """Return a freshly initialised :class:`NarrowResNet`.

    ``zero_init_residual`` is torchvision's option of starting every residual
    branch at zero (only affects initialisation, not the structure).
    """
    return NarrowResNet(layers=layers, num_classes=num_classes,
                        width_divisor=width_divisor,
                        zero_init_residual=zero_init_residual)
