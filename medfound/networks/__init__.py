"""Networks: plain ``nn.Module`` s whose state dicts are the interchange format.

Modules know nothing of training: they take tensors and return tensors (or dicts of them).

- :mod:`medfound.networks.resnet`: ResNet 18/34/50/101 backbones (torchvision parameter names).
- :mod:`medfound.networks.deeplabv3plus`: DeepLabV3+ for 2D segmentation (DAC).
- :mod:`medfound.networks.fcos`: FCOS detection head and decoding (targets and losses: :mod:`medfound.multitask`).
- :mod:`medfound.networks.swin_v2`: Swin V2 tiny/small/base encoders (torchvision parameter names).
- :mod:`medfound.networks.umedpt`: the UMedPT model (shared encoder, squeezer, decoders; task heads).
"""

from medfound.networks.deeplabv3plus import DeepLabV3Plus  # noqa: F401
from medfound.networks.fcos import FCOSHead, FCOSPostprocessor  # noqa: F401
from medfound.networks.resnet import ResNet, build_resnet  # noqa: F401
from medfound.networks.swin_v2 import SwinTransformerV2, swin_v2_b, swin_v2_s, swin_v2_t  # noqa: F401
from medfound.networks.umedpt import UMedPT, UMedPTEmbedding, UMedPTFeatureNet, UMedPTTaskOutput, batchnorm_to_groupnorm  # noqa: F401
