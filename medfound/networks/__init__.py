"""Networks: plain ``nn.Module`` s whose state dicts are the interchange format.

- :mod:`medfound.networks.resnet`: ResNet 18/34/50/101 backbones (torchvision names).
- :mod:`medfound.networks.deeplabv3plus`: DeepLabV3+ for 2D segmentation (DAC).
"""
