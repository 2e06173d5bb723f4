"""Networks: Swin V2 encoder, UMedPT shared blocks and heads, FCOS detection, DeepLabV3+.

Modules know nothing of training: they take tensors and return tensors (or dicts of them).
"""

from medfound.networks.fcos import FCOSHead, FCOSLoss, FCOSPostprocessor, FCOSTargetAssigner  # noqa: F401
