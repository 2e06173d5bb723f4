"""Networks: Swin V2 encoder, UMedPT shared blocks and heads, FCOS detection, DeepLabV3+.

Modules know nothing of training: they take tensors and return tensors (or dicts of them).
"""

from medfound.networks.swin_v2 import SwinTransformerV2, swin_v2_b, swin_v2_s, swin_v2_t  # noqa: F401
