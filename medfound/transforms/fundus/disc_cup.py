"""The disc/cup mask encoding of fundus segmentation releases, decoded and encoded.

REFUGE, Drishti-GS, RIM-ONE and the DoFE release store optic disc and cup as one grey mask:
0 cup, 128 rim, 255 background (:data:`DISC_CUP_VALUES`). :class:`DecodeDiscCup` turns it into
disc and cup channels or the class-index map 0 background, 1 rim, 2 cup (disc = rim + cup);
:class:`EncodeDiscCup` turns predictions back; :func:`disc_from_mask` reads the disc from any of
the three encodings. Array and dictionary forms.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from typing import Any

import torch
from monai.config import KeysCollection, NdarrayOrTensor
from monai.data import MetaTensor
from monai.transforms import MapTransform, Transform
from monai.utils import TransformBackends

from medfound.errors import LabelMismatchError
from medfound.transforms._utils import new_meta_like, source_of, to_tensor
from medfound.utils import check_bool, check_choice

__all__ = [
    "DISC_CUP_VALUES",
    "disc_from_mask",
    "DecodeDiscCup",
    "DecodeDiscCupd",
    "DecodeDiscCupD",
    "DecodeDiscCupDict",
    "EncodeDiscCup",
    "EncodeDiscCupd",
    "EncodeDiscCupD",
    "EncodeDiscCupDict",
]

#: the disc/cup mask encoding of REFUGE, Drishti-GS, RIM-ONE and the DoFE release
DISC_CUP_VALUES: dict[str, int] = {"cup": 0, "rim": 128, "background": 255}


def disc_from_mask(mask: NdarrayOrTensor, encoding: str = "dofe") -> torch.Tensor:
    """The optic disc ``(H, W)`` (bool) of a disc/cup mask in one of three ``encoding`` s.

    ``"dofe"``: 0 cup, 128 rim, 255 background (disc = value below 192); ``"index"``: 0 background,
    1 rim, 2 cup (disc = non-zero); ``"channels"``: channel 0 is the disc.

    Example
    -------
    >>> import torch
    >>> disc_from_mask(torch.tensor([[[255, 128, 0]]])).tolist()
    [[False, True, True]]
    """
    m = to_tensor(mask)
    m = m.as_tensor() if isinstance(m, MetaTensor) else m
    if m.ndim != 3:
        raise LabelMismatchError(f"a disc/cup mask must be (C, H, W), got shape {tuple(m.shape)}{source_of(mask)}")
    check_choice(encoding, ("dofe", "index", "channels"), "mask encoding")
    if encoding == "dofe":
        return m[0] < 192
    if encoding == "index":
        return m[0] > 0
    return m[0] > 0.5  # "channels"


class DecodeDiscCup(Transform):
    """Decode a disc/cup mask (0 cup, 128 rim, 255 background; 1 or 3 equal channels).

    ``output="channels"``: ``(2, H, W)`` with channel 0 the disc (rim + cup) and channel 1 the cup,
    values 0/1. ``output="index"``: ``(1, H, W)`` class map 0 background, 1 rim, 2 cup. Values are
    assigned to the nearest code (below 64 cup, below 192 rim), so resampled masks decode too;
    ``strict=True`` instead rejects anything but 0, 128 and 255 with :class:`LabelMismatchError`.

    Example
    -------
    >>> import torch
    >>> m = torch.tensor([[[255, 128, 0]]], dtype=torch.uint8)
    >>> DecodeDiscCup()(m).tolist(), DecodeDiscCup(output="index")(m).tolist()
    ([[[0.0, 1.0, 1.0]], [[0.0, 0.0, 1.0]]], [[[0.0, 1.0, 2.0]]])
    """

    backend = [TransformBackends.TORCH]

    def __init__(
        self, output: str = "channels", strict: bool = False, dtype: torch.dtype | str = torch.float32
    ) -> None:
        self.output = check_choice(output, ("channels", "index"), "output")
        self.strict = check_bool(strict, "strict")
        self.dtype = getattr(torch, dtype) if isinstance(dtype, str) else dtype

    def __call__(self, mask: NdarrayOrTensor) -> torch.Tensor:
        m_t = to_tensor(mask)
        m = m_t.as_tensor() if isinstance(m_t, MetaTensor) else m_t
        if m.ndim != 3 or m.shape[0] not in (1, 3, 4):
            raise LabelMismatchError(
                f"a disc/cup mask must be (1 or 3, H, W), got shape {tuple(m.shape)}{source_of(m_t)}"
            )
        v = m[0].to(torch.float32)
        if m.shape[0] >= 3 and not (torch.equal(m[0], m[1]) and torch.equal(m[0], m[2])):
            raise LabelMismatchError(f"the channels of an RGB disc/cup mask differ{source_of(m_t)}")
        if self.strict:
            bad = ~((v == 0) | (v == 128) | (v == 255))
            if bool(bad.any()):
                found = torch.unique(v[bad])[:5].tolist()
                raise LabelMismatchError(
                    f"disc/cup mask holds values other than 0, 128, 255 (e.g. {found}){source_of(m_t)}"
                )
        cup = v < 64
        disc = v < 192
        if self.output == "channels":
            out = torch.stack([disc, cup]).to(self.dtype)
        else:
            out = (disc.to(torch.int64) + cup.to(torch.int64))[None].to(self.dtype)
        return new_meta_like(out, m_t)


class DecodeDiscCupd(MapTransform):
    """Dictionary form of :class:`DecodeDiscCup`.

    Example
    -------
    >>> import torch
    >>> DecodeDiscCupd("mask", output="index")({"mask": torch.tensor([[[0, 255]]])})["mask"].tolist()
    [[[2.0, 0.0]]]
    """

    backend = DecodeDiscCup.backend

    def __init__(self, keys: KeysCollection, output: str = "channels", strict: bool = False,
                 dtype: torch.dtype | str = torch.float32, allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        self.decoder = DecodeDiscCup(output, strict, dtype)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.decoder(d[key])
        return d


class EncodeDiscCup(Transform):
    """Encode disc and cup back to the 0 cup / 128 rim / 255 background mask (uint8).

    ``input="channels"``: ``(2, H, W)`` disc and cup (a cup pixel outside the disc still encodes
    as cup); ``input="index"``: ``(1, H, W)`` map 0 background, 1 rim, 2 cup. ``num_channels`` is
    1 or 3 (RGB masks as in the DoFE release). Inverse of :class:`DecodeDiscCup`.

    Example
    -------
    >>> import torch
    >>> EncodeDiscCup(input="index")(torch.tensor([[[0, 1, 2]]])).tolist()
    [[[255, 128, 0]]]
    """

    backend = [TransformBackends.TORCH]

    # ``input`` mirrors DecodeDiscCup(output=...)
    def __init__(self, input: str = "channels", num_channels: int = 1) -> None:  # noqa: A002
        self.input = check_choice(input, ("channels", "index"), "input")
        self.num_channels = check_choice(num_channels, (1, 3), "num_channels")

    def __call__(self, labels: NdarrayOrTensor) -> torch.Tensor:
        l_t = to_tensor(labels)
        x = l_t.as_tensor() if isinstance(l_t, MetaTensor) else l_t
        if self.input == "channels":
            if x.ndim != 3 or x.shape[0] != 2:
                raise LabelMismatchError(f"EncodeDiscCup expects (2, H, W) disc and cup, got shape {tuple(x.shape)}")
            disc, cup = x[0] > 0.5, x[1] > 0.5
        else:
            if x.ndim != 3 or x.shape[0] != 1:
                raise LabelMismatchError(f"EncodeDiscCup expects a (1, H, W) class map, got shape {tuple(x.shape)}")
            cls = torch.round(x[0].to(torch.float32)).to(torch.int64)
            if bool(((cls < 0) | (cls > 2)).any()):
                raise LabelMismatchError(f"class map holds values outside 0, 1, 2{source_of(l_t)}")
            disc, cup = cls >= 1, cls == 2
        out = torch.full(disc.shape, DISC_CUP_VALUES["background"], dtype=torch.uint8, device=x.device)
        out[disc] = DISC_CUP_VALUES["rim"]
        out[cup] = DISC_CUP_VALUES["cup"]
        return new_meta_like(out[None].repeat(self.num_channels, 1, 1), l_t)


class EncodeDiscCupd(MapTransform):
    """Dictionary form of :class:`EncodeDiscCup`.

    Example
    -------
    >>> import torch
    >>> EncodeDiscCupd("pred")({"pred": torch.tensor([[[1.0, 1.0]], [[0.0, 1.0]]])})["pred"].tolist()
    [[[128, 0]]]
    """

    backend = EncodeDiscCup.backend

    def __init__(self, keys: KeysCollection, input: str = "channels", num_channels: int = 1,  # noqa: A002
                 allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        self.encoder = EncodeDiscCup(input, num_channels)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.encoder(d[key])
        return d


DecodeDiscCupD = DecodeDiscCupDict = DecodeDiscCupd
EncodeDiscCupD = EncodeDiscCupDict = EncodeDiscCupd
