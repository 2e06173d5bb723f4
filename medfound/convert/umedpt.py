"""Import the published UMedPT weights (MedicalMultitaskModeling ``.pt.zip`` archives) without running them.

UMedPT's authors publish their model as a stored zip written by their package
MedicalMultitaskModeling (``mmm``): one member ``<key>.pt`` per shared block or task
(``encoder.pt``, ``squeezer.pt``, possibly ``decoder.pt`` and task names). Each member is a
torch zip checkpoint whose ``data.pkl`` (pickle protocol 2) holds the **whole module
object**, so loading it the authors' way needs ``mmm``, torchvision, pydantic and
segmentation-models-pytorch importable and executes whatever the file says.

This importer never does that. A restricted unpickler resolves only the globals such
archives need (:data:`ALLOWED_CLASSES`: the classes of the module tree, tensor rebuild
functions, ``OrderedDict``/``set``, ``getattr`` for nested ``Config`` classes) to inert
stand-ins; anything else is refused with :class:`~medfound.errors.UnsafePickleError`
naming the member and the global. Classes are never instantiated and no code from the file
runs: module trees become plain data (:class:`PickledObject`), tensors are rebuilt from
the member's raw storage records. Parameters and buffers are then collected with their
state-dict names and mapped onto medfound's UMedPT:

- ``encoder.pt`` (``PyramidEncoder`` > ``TorchVisionSwinformer`` > torchvision
  ``SwinTransformer`` without head): keys ``model.wrapped_model.<torchvision key>`` ->
  :class:`~medfound.networks.swin_v2.SwinTransformerV2` (torchvision names, strict);
- ``squeezer.pt`` (``Squeezer``: ``conv`` 1x1 if ``out_channels`` was set, ``norm`` =
  GroupNorm(1, C), GELU, average pooling) -> :class:`~medfound.networks.umedpt.Squeezer`;
- ``decoder.pt`` if present (``PyramidDecoder`` > ``SMPUnetDecoder`` > smp ``UnetDecoder``)
  -> :class:`~medfound.networks.umedpt.UNetDecoder`, with the geometry of the smp version
  that wrote it (:data:`UNET_DECODER_GEOMETRY`: mmm 1.0.4's smp 0.3.x ``DecoderBlock`` ends
  at stride 2, smp 0.5's ``UnetDecoderBlock`` at full size), recorded as
  ``pixel_embedding_stride`` in the converted config.

Other members (task heads) are listed and skipped. The published weights must not be
redistributed (their licence): the importer works on the user's own download.

Sizes are checked before anything is read into memory (:mod:`medfound.io.limits`): each
archive member and record against what its compressed bytes can expand to and against the
memory limit (``MEDFOUND_MAX_BYTES``, 1 GiB by default per record), and each tensor record
against its storage (a record cannot hold more elements than its storage, so a 1-element
storage viewed with stride 0 as a billion elements is refused, not materialised).

Example
-------
.. code-block:: bash

    medfound convert-umedpt encoder-1.0.4.pt.zip umedpt_weights/

.. code-block:: python

    from medfound.convert.umedpt import convert_umedpt
    from medfound.networks import UMedPT
    report = convert_umedpt("encoder-1.0.4.pt.zip", "umedpt_weights")
    model = UMedPT(**report["config"])
    model.load_state_dict(torch.load("umedpt_weights/model.pt", weights_only=True))
"""

from __future__ import annotations

import hashlib
import io
import math
import os
import pickle
import re
import zipfile
from collections import OrderedDict
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch

from medfound.errors import ConfigError, UnsafePickleError, WeightsError
from medfound.io.limits import check_decoded_size
from medfound.networks.swin_v2 import SWIN_V2_VARIANTS
from medfound.utils import atomic_torch_save, atomic_write_json

__all__ = [
    "ALLOWED_CLASSES",
    "UNET_DECODER_GEOMETRY",
    "PickledObject",
    "read_archive_member",
    "module_state_dict",
    "read_umedpt_archive",
    "convert_umedpt",
]

_MMM = "mmm.mtl_modules.shared_blocks"
_TV = "torchvision.models.swin_transformer"
_SMP = "segmentation_models_pytorch"

#: classes a UMedPT archive's module trees are made of: resolved to inert stand-ins, never imported
ALLOWED_CLASSES: frozenset[str] = frozenset(
    {
        f"{_MMM}.PyramidEncoder.PyramidEncoder",
        f"{_MMM}.PyramidEncoder.PyramidEncoder.Config",
        "mmm.neural.modules.swinformer.TorchVisionSwinformer",
        "mmm.neural.modules.swinformer.TorchVisionSwinformer.Config",
        f"{_TV}.SwinTransformer",
        f"{_TV}.SwinTransformerBlockV2",
        f"{_TV}.ShiftedWindowAttentionV2",
        f"{_TV}.PatchMergingV2",
        "torchvision.ops.misc.MLP",
        "torchvision.ops.misc.Permute",
        "torchvision.ops.stochastic_depth.StochasticDepth",
        f"{_MMM}.Squeezer.Squeezer",
        f"{_MMM}.Squeezer.Squeezer.Config",
        "mmm.neural.activations.ActivationFunctionConfig",
        "mmm.neural.activations.ActivationFn",
        "mmm.neural.pooling.GlobalPoolingConfig",
        "mmm.neural.pooling.GlobalPooling",
        f"{_MMM}.PyramidDecoder.PyramidDecoder",
        f"{_MMM}.PyramidDecoder.PyramidDecoder.Config",
        "mmm.neural.modules.smp_modules.SMPUnetDecoder",
        "mmm.neural.modules.smp_modules.SMPUnetDecoder.Config",
        f"{_SMP}.decoders.unet.decoder.UnetDecoder",
        f"{_SMP}.decoders.unet.decoder.DecoderBlock",  # segmentation-models-pytorch 0.3.x (mmm 1.0.4)
        f"{_SMP}.decoders.unet.decoder.UnetDecoderBlock",  # segmentation-models-pytorch 0.5
        f"{_SMP}.base.modules.Conv2dReLU",
        f"{_SMP}.base.modules.Attention",
        *(
            f"torch.nn.modules.{m}"
            for m in (
                "container.Sequential",
                "container.ModuleList",
                "container.ModuleDict",
                "conv.Conv2d",
                "linear.Linear",
                "linear.Identity",
                "normalization.LayerNorm",
                "normalization.GroupNorm",
                "batchnorm.BatchNorm2d",
                "activation.GELU",
                "activation.ReLU",
                "dropout.Dropout",
                "dropout.Dropout2d",
                "pooling.AdaptiveAvgPool2d",
                "pooling.AdaptiveMaxPool2d",
                "flatten.Flatten",
            )
        ),
    }
)

#: U-Net decoder block class of each published segmentation-models-pytorch version -> the
#: decoder's geometry. With mmm's pyramid (input, strides 4-32) the decoder has 4 blocks after
#: the deepest map. smp 0.3.x's ``DecoderBlock`` doubles the size in every block
#: (``scale_factor=2``), so its last, skip-less block ends at stride 2 (the published
#: encoder-1.0.4 gives a 112x128 pixel embedding for a 224x256 input); smp 0.5's
#: ``UnetDecoderBlock`` interpolates to the next level's size and its last block to the input's,
#: i.e. full size. Recorded in the converted config as ``pixel_embedding_stride``.
UNET_DECODER_GEOMETRY: dict[str, dict[str, Any]] = {
    f"{_SMP}.decoders.unet.decoder.DecoderBlock": {"smp": "0.3.x", "pixel_embedding_stride": 2},
    f"{_SMP}.decoders.unet.decoder.UnetDecoderBlock": {"smp": "0.5", "pixel_embedding_stride": 1},
}

_STORAGE_DTYPES: dict[str, torch.dtype] = {
    "FloatStorage": torch.float32,
    "DoubleStorage": torch.float64,
    "HalfStorage": torch.float16,
    "BFloat16Storage": torch.bfloat16,
    "LongStorage": torch.int64,
    "IntStorage": torch.int32,
    "ShortStorage": torch.int16,
    "CharStorage": torch.int8,
    "ByteStorage": torch.uint8,
    "BoolStorage": torch.bool,
}


class PickledObject:
    """Inert stand-in for an instance of an allowed class: its class path, call arguments and state.

    ``path`` is the pickled class (``module.QualName``); ``args`` holds the arguments of a
    REDUCE call (e.g. an enum's value), ``state`` what BUILD set (a module's ``__dict__``, a
    pydantic model's state dict). Nothing of the original class runs.
    """

    path: str = ""
    # NEWOBJ creates instances without calling __init__: class-level defaults
    args: tuple = ()
    state: Any = None

    def __init__(self, *args: Any) -> None:
        self.args = args
        self.state: Any = None

    def __setstate__(self, state: Any) -> None:
        self.state = state

    def attr(self, name: str, default: Any = None) -> Any:
        """An attribute of the pickled object (its ``__dict__`` entry, or a pydantic field)."""
        state = self.state if isinstance(self.state, dict) else {}
        if "__dict__" in state and isinstance(state["__dict__"], dict):  # pydantic v2 model
            state = state["__dict__"]
        return state.get(name, default)

    def __repr__(self) -> str:
        return f"PickledObject({self.path})"


def _stand_in_class(path: str, cache: dict[str, type]) -> type:
    if path not in cache:
        cache[path] = type(path.rsplit(".", 1)[-1], (PickledObject,), {"path": path, "__module__": __name__})
    return cache[path]


class _RestrictedUnpickler(pickle.Unpickler):
    """Resolves only :data:`ALLOWED_CLASSES` (to stand-ins) and a few pure functions."""

    def __init__(self, data: bytes, member: str, records: Callable[[str], bytes], classes: dict[str, type]) -> None:
        super().__init__(io.BytesIO(data))
        self.member = member
        self.records = records
        self.classes = classes
        self.storages: dict[str, torch.Tensor] = {}

    def _refuse(self, what: str) -> UnsafePickleError:
        return UnsafePickleError(
            f"{self.member}: refusing global {what}: not among the classes and functions a "
            "UMedPT archive needs (the importer never runs code from the file)"
        )

    def find_class(self, module: str, name: str) -> Any:
        if module == "__builtin__":  # protocol 2 writes Python 2 names
            module = "builtins"
        path = f"{module}.{name}"
        if path in ALLOWED_CLASSES:
            return _stand_in_class(path, self.classes)
        if module == "torch" and name in _STORAGE_DTYPES:
            return _stand_in_class(path, self.classes)
        functions: dict[str, Any] = {
            "collections.OrderedDict": OrderedDict,
            "builtins.set": set,
            "builtins.frozenset": frozenset,
            "builtins.getattr": self._getattr,
            "torch._utils._rebuild_tensor_v2": self._rebuild_tensor,
            "torch._utils._rebuild_parameter": self._rebuild_parameter,
            "torch._utils._rebuild_parameter_with_state": self._rebuild_parameter,
        }
        if path in functions:
            return functions[path]
        raise self._refuse(path)

    def _getattr(self, owner: Any, name: Any) -> Any:
        # protocol 2 pickles a nested class as getattr(Outer, "Config"): allow exactly that
        if isinstance(owner, type) and issubclass(owner, PickledObject) and isinstance(name, str):
            path = f"{owner.path}.{name}"
            if path in ALLOWED_CLASSES:
                return _stand_in_class(path, self.classes)
            raise self._refuse(f"getattr({owner.path}, {name!r})")
        raise self._refuse(f"getattr on {type(owner).__name__}")

    def persistent_load(self, pid: Any) -> torch.Tensor:
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage"):
            raise WeightsError(f"{self.member}: unexpected persistent id {str(pid)[:80]} (not a torch storage)")
        _, storage_type, key, _location, numel = pid
        dtype = _STORAGE_DTYPES.get(getattr(storage_type, "path", "").rsplit(".", 1)[-1])
        if dtype is None:
            raise WeightsError(f"{self.member}: unsupported storage type {storage_type!r}")
        if key not in self.storages:
            raw = self.records(f"data/{key}")
            itemsize = torch.empty((), dtype=dtype).element_size()
            if len(raw) != int(numel) * itemsize:
                raise WeightsError(f"{self.member}: storage {key} has {len(raw)} bytes, expected {numel} x {itemsize}")
            self.storages[key] = torch.frombuffer(bytearray(raw), dtype=dtype) if raw else torch.empty(0, dtype=dtype)
        return self.storages[key]

    def _rebuild_tensor(self, storage: Any, offset: Any, size: Any, stride: Any, *_: Any) -> torch.Tensor:
        if not isinstance(storage, torch.Tensor):
            raise WeightsError(f"{self.member}: tensor record without storage")
        try:
            size, stride, offset = tuple(int(v) for v in size), tuple(int(v) for v in stride), int(offset)
            # a record holds at most its storage's elements (views, never expansions): a 1-element storage
            # with stride 0 must not become a billion-element tensor here
            check_decoded_size(math.prod(size) * storage.element_size(), self.member,
                               stored=max(storage.numel() - offset, 0) * storage.element_size(), codec="raw",
                               what=f"tensor data (size {list(size)}, stride {list(stride)})", holder="its storage")
            return storage.as_strided(size, stride, offset).clone()
        except (RuntimeError, TypeError, ValueError) as err:
            if isinstance(err, WeightsError):
                raise
            raise WeightsError(f"{self.member}: malformed tensor record ({err})") from None

    def _rebuild_parameter(self, data: Any, *_: Any) -> torch.Tensor:
        if not isinstance(data, torch.Tensor):
            raise WeightsError(f"{self.member}: parameter record without tensor data")
        return data


#: zip compression method -> codec of medfound.io.limits (others: the limit alone)
_ZIP_CODECS = {zipfile.ZIP_STORED: "raw", zipfile.ZIP_DEFLATED: "deflate"}


def _read_checked(archive: zipfile.ZipFile, name: str, source: str) -> bytes:
    """``archive.read(name)`` after checking its declared size against its stored bytes and the limit.

    zipfile stops at the declared size, so what is checked here is what can be allocated.
    """
    info = archive.getinfo(name)
    check_decoded_size(info.file_size, source, stored=info.compress_size, codec=_ZIP_CODECS.get(info.compress_type),
                       what="archive data")
    return archive.read(info)


def read_archive_member(data: bytes, member: str, classes: dict[str, type] | None = None) -> Any:
    """Unpickle one torch zip checkpoint (``bytes``) with the restricted unpickler.

    Returns the plain-data object tree (:class:`PickledObject` for allowed classes).
    ``member`` names the checkpoint in error messages.
    """
    try:
        inner = zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile:
        raise WeightsError(f"{member}: not a torch checkpoint (not a zip file)") from None
    pickles = [n for n in inner.namelist() if n.endswith("/data.pkl") and n.count("/") == 1]
    if len(pickles) != 1:
        raise WeightsError(f"{member}: expected one '<folder>/data.pkl' record, found {len(pickles)}")
    prefix = pickles[0][: -len("data.pkl")]
    names = set(inner.namelist())
    if f"{prefix}byteorder" in names and inner.read(f"{prefix}byteorder").decode().strip() != "little":
        raise WeightsError(f"{member}: big-endian checkpoints are not supported")

    def records(name: str) -> bytes:
        if prefix + name not in names:
            raise WeightsError(f"{member}: missing record {prefix + name}")
        return _read_checked(inner, prefix + name, f"{member}:{prefix + name}")

    unpickler = _RestrictedUnpickler(_read_checked(inner, pickles[0], f"{member}:{pickles[0]}"), member, records,
                                     {} if classes is None else classes)
    try:
        return unpickler.load()
    except (UnsafePickleError, WeightsError):
        raise
    except Exception as err:  # malformed pickle: report, do not crash with an internal error
        raise WeightsError(f"{member}: cannot read the pickled module ({type(err).__name__}: {err})") from None


def module_state_dict(root: PickledObject, member: str = "module") -> tuple[OrderedDict, dict[str, str]]:
    """The state dict a pickled ``nn.Module`` tree would give, and the class path of every submodule.

    Follows ``nn.Module.state_dict``: parameters, then persistent buffers, then submodules,
    in insertion order; ``None`` entries are skipped.
    """
    state: OrderedDict[str, torch.Tensor] = OrderedDict()
    classes: dict[str, str] = {}

    def visit(obj: Any, prefix: str) -> None:
        if not isinstance(obj, PickledObject) or not isinstance(obj.state, dict):
            raise WeightsError(f"{member}: {prefix or 'root'} is not a pickled module ({obj!r})")
        classes[prefix.rstrip(".")] = obj.path
        d = obj.state
        skip = set(d.get("_non_persistent_buffers_set") or ())
        for kind in ("_parameters", "_buffers"):
            for name, tensor in (d.get(kind) or {}).items():
                if tensor is None or (kind == "_buffers" and name in skip):
                    continue
                if not isinstance(tensor, torch.Tensor):
                    raise WeightsError(f"{member}: {prefix}{name} is not a tensor")
                state[prefix + name] = tensor
        for name, child in (d.get("_modules") or {}).items():
            if child is not None:
                visit(child, f"{prefix}{name}.")

    visit(root, "")
    return state, classes


def read_umedpt_archive(path: str | os.PathLike, members: tuple[str, ...] = ("encoder", "squeezer", "decoder")) -> dict:
    """Read the shared blocks of a UMedPT ``.pt.zip`` archive as plain data.

    Returns ``{"blocks": {key: (state_dict, classes, root)}, "skipped": [member names]}``
    for the members named ``<key>.pt`` with ``key`` in ``members``; other members are not
    unpickled.
    """
    path = Path(path)
    try:
        outer = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as err:
        raise WeightsError(f"{path}: not a UMedPT .pt.zip archive ({err})") from None
    blocks, skipped = {}, []
    with outer:
        for info in outer.infolist():
            if info.is_dir():
                continue
            key = info.filename[:-3] if info.filename.endswith(".pt") else None
            if key not in members:
                skipped.append(info.filename)
                continue
            member = f"{path.name}:{info.filename}"
            root = read_archive_member(_read_checked(outer, info.filename, member), member)
            state, classes = module_state_dict(root, member)
            blocks[key] = (state, classes, root)
    return {"blocks": blocks, "skipped": skipped}


# -- mapping onto medfound ---------------------------------------------------------------------


def _expect_class(classes: Mapping[str, str], name: str, expected: str, member: str) -> None:
    if classes.get(name) != expected:
        raise WeightsError(f"{member}: expected {name or 'the root'} to be {expected}, found {classes.get(name)}")


def _check_groupnorm(root: PickledObject, classes: Mapping[str, str], member: str) -> None:
    """Every norm of a converted shared block must be GroupNorm(1, C) (BatchNorm cannot be reproduced)."""
    bad = [k for k, c in classes.items() if c.endswith("BatchNorm2d")]
    if bad:
        raise WeightsError(
            f"{member}: BatchNorm at {bad[:3]}: only archives saved with per-sample norms "
            "(norm_layer 'affinelayernorm', GroupNorm(1, C)) can be reproduced"
        )

    def visit(obj: PickledObject, prefix: str) -> None:
        if obj.path.endswith("normalization.GroupNorm") and obj.attr("num_groups") != 1:
            raise WeightsError(
                f"{member}: {prefix or 'root'} is GroupNorm({obj.attr('num_groups')}, C), expected 1 group"
            )
        for name, child in (obj.attr("_modules") or {}).items():
            if isinstance(child, PickledObject):
                visit(child, f"{prefix}{name}.")

    visit(root, "")


def _encoder_state(state: Mapping[str, torch.Tensor], classes: Mapping[str, str], member: str) -> tuple[dict, dict]:
    _expect_class(classes, "", f"{_MMM}.PyramidEncoder.PyramidEncoder", member)
    _expect_class(classes, "model", "mmm.neural.modules.swinformer.TorchVisionSwinformer", member)
    _expect_class(classes, "model.wrapped_model", f"{_TV}.SwinTransformer", member)
    if not classes.get("model.wrapped_model.features.1.0", "").endswith("SwinTransformerBlockV2"):
        raise WeightsError(
            f"{member}: the encoder is not a Swin V2 (blocks are {classes.get('model.wrapped_model.features.1.0')})"
        )
    extra = [k for k in state if not k.startswith("model.wrapped_model.")]
    if extra:
        raise WeightsError(f"{member}: unsupported encoder entries (pyramid channel remapping?): {extra[:3]}")
    tv = {k[len("model.wrapped_model.") :]: v for k, v in state.items()}
    tv = {k: v for k, v in tv.items() if not k.startswith("head.")}
    try:
        embed_dim = int(tv["features.0.0.weight"].shape[0])
        patch = int(tv["features.0.0.weight"].shape[-1])
        depths, heads = [], []
        for stage in (1, 3, 5, 7):
            blocks = {int(m.group(1)) for k in tv if (m := re.match(rf"features\.{stage}\.(\d+)\.", k))}
            depths.append(len(blocks))
            heads.append(int(tv[f"features.{stage}.0.attn.logit_scale"].shape[0]))
        table = tv["features.1.0.attn.relative_coords_table"].shape
        window = [(int(table[1]) + 1) // 2, (int(table[2]) + 1) // 2]
    except KeyError as err:
        raise WeightsError(f"{member}: the encoder lacks {err.args[0]} (not a 4-stage torchvision Swin V2)") from None
    config: dict[str, Any] = {"window_size": window if window[0] != window[1] else window[0]}
    variant = next(
        (
            name
            for name, v in SWIN_V2_VARIANTS.items()
            if (v["embed_dim"], list(v["depths"]), list(v["num_heads"])) == (embed_dim, depths, heads)
        ),
        None,
    )
    if variant is not None:
        config["variant"] = variant
    else:
        config.update(embed_dim=embed_dim, depths=depths, num_heads=heads)
    if patch != 4:
        raise WeightsError(f"{member}: patch size {patch} is not supported (UMedPT's encoder uses 4)")
    return tv, config


def _squeezer_state(state, classes, root: PickledObject, member: str) -> tuple[dict, dict]:
    _expect_class(classes, "", f"{_MMM}.Squeezer.Squeezer", member)
    _check_groupnorm(root, classes, member)
    if classes.get("pool") != "torch.nn.modules.pooling.AdaptiveAvgPool2d":
        raise WeightsError(f"{member}: only average pooling is supported, found {classes.get('pool')}")
    if classes.get("activation") != "torch.nn.modules.activation.GELU":
        raise WeightsError(f"{member}: only GELU is supported, found {classes.get('activation')}")
    args = root.attr("args")
    if isinstance(args, PickledObject) and args.attr("connect_latent_and_feature"):
        raise WeightsError(f"{member}: connect_latent_and_feature=True (experimental) is not supported")
    ours = {k: v for k, v in state.items() if k.split(".")[0] in ("conv", "norm")}
    if set(ours) != set(state):
        raise WeightsError(f"{member}: unexpected squeezer entries {sorted(set(state) - set(ours))[:3]}")
    channels = int(state["norm.weight"].shape[0])
    return ours, {"squeezer_channels": channels if "conv.weight" in state else None}


def _decoder_state(state, classes, root: PickledObject, member: str) -> tuple[dict, dict]:
    _expect_class(classes, "", f"{_MMM}.PyramidDecoder.PyramidDecoder", member)
    _expect_class(classes, "model", "mmm.neural.modules.smp_modules.SMPUnetDecoder", member)
    _expect_class(classes, "model.decoder", f"{_SMP}.decoders.unet.decoder.UnetDecoder", member)
    if classes.get("model.decoder.center") != "torch.nn.modules.linear.Identity":
        raise WeightsError(f"{member}: a U-Net centre block is not supported")
    _check_groupnorm(root, classes, member)
    ours = {}
    for key, value in state.items():
        if key.startswith("model.decoder."):
            ours[key[len("model.decoder.") :]] = value
        elif key.startswith("model."):
            ours[key[len("model.") :]] = value
        else:
            raise WeightsError(f"{member}: unexpected decoder entry {key}")
    try:
        pixel = int(ours["final_conv.weight"].shape[0])
        hidden = max(int(v.shape[0]) for k, v in ours.items() if re.match(r"blocks\.\d+\.conv1\.0\.weight", k))
    except (KeyError, ValueError):
        raise WeightsError(f"{member}: not an SMP U-Net decoder with final_conv") from None
    block_classes = {c for k, c in classes.items() if re.fullmatch(r"model\.decoder\.blocks\.\d+", k)}
    if len(block_classes) != 1 or next(iter(block_classes)) not in UNET_DECODER_GEOMETRY:
        raise WeightsError(
            f"{member}: U-Net decoder blocks of class {sorted(block_classes)}; known: one of "
            f"{sorted(UNET_DECODER_GEOMETRY)} (segmentation-models-pytorch 0.3.x or 0.5)"
        )
    stride = UNET_DECODER_GEOMETRY[next(iter(block_classes))]["pixel_embedding_stride"]
    return ours, {"pixel_embedding_channels": pixel, "seg_hidden_channels": hidden, "pixel_embedding_stride": stride}


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _check_output_folder(out_dir: Path) -> None:
    """Raise :class:`ConfigError` when ``out_dir`` could not be created or written, without creating it."""
    existing = out_dir
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise ConfigError(f"cannot create the output folder {out_dir}: {existing} is not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        what = "write into" if existing == out_dir else "create"
        raise ConfigError(f"cannot {what} the output folder {out_dir}: permission denied")


def convert_umedpt(archive: str | os.PathLike, out_dir: str | os.PathLike, seed: int = 0) -> dict:
    """Convert a UMedPT ``.pt.zip`` archive into medfound state dicts and a bundle-ready ``model.pt``.

    Writes (atomically) into ``out_dir``:

    - ``encoder.pt``: torchvision-format Swin V2 state dict (no head), loads into
      :class:`~medfound.networks.swin_v2.SwinTransformerV2` and ``UMedPT(encoder_weights=...)``;
    - ``squeezer.pt`` and, if the archive has a decoder, ``seg_decoder.pt``: state dicts of
      medfound's blocks;
    - ``model.pt``: the state dict of ``UMedPT(**config)`` (no task heads) with the imported
      blocks; blocks the archive lacks (the detection decoder, maybe the segmentation
      decoder) keep their initialisation from ``seed``;
    - ``umedpt_config.json``: ``config`` (the ``UMedPT`` arguments) and the provenance.

    Returns the content of ``umedpt_config.json`` as a dict.
    """
    from medfound.networks.umedpt import UMedPT  # convert -> networks, never the other way

    archive, out_dir = Path(archive), Path(out_dir)
    # first: a folder that cannot be written should not wait for the archive to be read; it is
    # created only once the archive has converted, so a refused archive leaves nothing behind
    _check_output_folder(out_dir)
    content = read_umedpt_archive(archive)
    blocks = content["blocks"]
    if "encoder" not in blocks:
        raise WeightsError(
            f"{archive}: no encoder.pt member (members read: {sorted(blocks)}, skipped: {content['skipped']})"
        )
    member = f"{archive.name}:encoder.pt"
    encoder, config = _encoder_state(blocks["encoder"][0], blocks["encoder"][1], member)
    mapped = {"encoder": encoder}
    if "squeezer" in blocks:
        state, classes, root = blocks["squeezer"]
        mapped["squeezer"], extra = _squeezer_state(state, classes, root, f"{archive.name}:squeezer.pt")
        config.update(extra)
    else:
        config["squeezer_channels"] = None
    if "decoder" in blocks:
        state, classes, root = blocks["decoder"]
        mapped["seg_decoder"], extra = _decoder_state(state, classes, root, f"{archive.name}:decoder.pt")
        config.update(extra)

    with torch.random.fork_rng(devices=[]):  # the blocks not in the archive start from `seed`; the caller's RNG stays
        torch.manual_seed(seed)
        model = UMedPT(**config)
    for name, state in mapped.items():
        try:
            model.shared[name].load_state_dict(state, strict=True)
        except RuntimeError as err:
            raise WeightsError(f"{archive}: the archive's {name} does not fit medfound's: {err}") from None
    if "squeezer" in mapped and "seg_decoder" in mapped:
        expected = model.shared["squeezer"].out_channels
        got = int(mapped["seg_decoder"]["blocks.0.conv1.0.weight"].shape[1]) - model.shared["encoder"].out_channels[2]
        if got != expected:
            raise WeightsError(f"{archive}: decoder expects {got} deepest channels, the squeezer gives {expected}")

    written = {"encoder": "encoder.pt"}
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ConfigError(f"cannot create the output folder {out_dir}: {err.strerror or err}") from None
    atomic_torch_save(encoder, out_dir / "encoder.pt")
    if "squeezer" in mapped:
        atomic_torch_save(dict(model.shared["squeezer"].state_dict()), out_dir / "squeezer.pt")
        written["squeezer"] = "squeezer.pt"
    if "seg_decoder" in mapped:
        atomic_torch_save(dict(model.shared["seg_decoder"].state_dict()), out_dir / "seg_decoder.pt")
        written["seg_decoder"] = "seg_decoder.pt"
    atomic_torch_save(dict(model.state_dict()), out_dir / "model.pt")
    report = {
        "config": config,
        "source": {"archive": archive.name, "sha256": _sha256(archive)},
        "imported": sorted(mapped),
        "initialised": sorted(set(model.shared) - set(mapped)),
        "skipped_members": content["skipped"],
        "files": {**written, "model": "model.pt"},
        "note": "converted from the user's own copy of the published UMedPT weights; "
        "their licence forbids redistribution",
    }
    atomic_write_json(out_dir / "umedpt_config.json", report)
    return report
