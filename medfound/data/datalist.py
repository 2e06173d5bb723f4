"""The datalist format shared by the dataset adapters, the CD-SSDG splits and the evaluation.

A **datalist** is a MONAI datalist JSON (readable with
``monai.data.load_decathlon_datalist(path, data_list_key="data")``) with a few
top-level fields that say what the labels mean::

    {
      "dataset": "fundus",
      "class_names": ["background", "rim", "cup"],         # label value i <-> class_names[i]
      "regions": {"disc": [1, 2], "cup": [2]},             # named unions of classes the metrics report
      "domains": ["Domain1", "Domain2", "Domain3", "Domain4"],
      "root": "/data/fundus", "synthetic": false, "skipped": [], ...
      "data": [
        {"image": "/data/fundus/Domain1/train/ROIs/image/x.png",   # absolute paths
         "label": "/cache/fundus/labels/Domain1/train/x.png",      # class-index map, optional
         "domain": "Domain1",                                      # required
         "case_id": "Domain1/train/x",                             # unique
         "split": "train",                                         # optional (predefined split)
         "subject": "site1-sc01"},                                 # optional (slices of one subject)
        ...
      ]
    }

Labels are always **class-index maps** (one channel, value = class index), whatever the
encoding of the original release; adapters decode the originals once into a cache. The
datalist of any other dataset works with the splits and the evaluation as long as its
items carry ``image`` and ``domain`` (and ``label`` where labelled).

Example
-------
>>> import tempfile, os
>>> from medfound.data.datalist import POLYP, make_datalist, load_datalist
>>> from medfound.utils import atomic_write_json
>>> items = [{"image": "/d/a.png", "label": "/d/a_l.png", "domain": "Kvasir", "case_id": "Kvasir/a"}]
>>> path = os.path.join(tempfile.mkdtemp(), "datalist.json")
>>> _ = atomic_write_json(path, make_datalist(POLYP, items), sort_keys=True)
>>> load_datalist(path)["regions"]
{'polyp': [1]}
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medfound.errors import ConfigError, DatasetLayoutError
from medfound.utils import read_config_file

__all__ = [
    "DATALIST_KEY",
    "DatasetSpec",
    "FUNDUS",
    "POLYP",
    "SCGM",
    "DATASETS",
    "make_datalist",
    "validate_items",
    "validate_regions",
    "load_datalist",
]

#: key of the item list in a datalist JSON
DATALIST_KEY = "data"


@dataclass(frozen=True)
class DatasetSpec:
    """What a dataset's class-index labels mean.

    Parameters
    ----------
    name : dataset name.
    class_names : ``class_names[i]`` names label value ``i`` (0 is background).
    regions : region name -> label values whose union the metrics score as one mask.
    """

    name: str
    class_names: tuple[str, ...]
    regions: Mapping[str, tuple[int, ...]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        validate_regions(self.class_names, self.regions)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able ``{"dataset", "class_names", "regions"}``."""
        return {"dataset": self.name, "class_names": list(self.class_names),
                "regions": {k: list(v) for k, v in self.regions.items()}}




def validate_regions(class_names: Sequence[str], regions: Mapping[str, Iterable[int]]) -> None:
    """Raise :class:`ConfigError` unless every region is a non-empty set of valid class indices."""
    if len(class_names) < 2:
        raise ConfigError(f"class_names needs background and at least one class, got {list(class_names)}")
    for name, values in regions.items():
        values = list(values)
        if not values or any(not isinstance(v, int) or not 0 < v < len(class_names) for v in values):
            raise ConfigError(f"region {name!r}: {values} must be class indices in 1..{len(class_names) - 1}")


def validate_items(items: Sequence[Mapping[str, Any]], source: str = "datalist") -> None:
    """Check that items carry ``image`` and ``domain`` and unique ``case_id`` s (when given).

    Raises :class:`ConfigError` naming ``source`` and the first offending items.
    """
    if not isinstance(items, Sequence) or isinstance(items, (str, bytes)):
        raise ConfigError(f"{source}: the item list must be a list of dicts")
    bad = [i for i, it in enumerate(items) if not isinstance(it, Mapping) or "image" not in it or "domain" not in it]
    if bad:
        raise ConfigError(f"{source}: {len(bad)} item(s) lack 'image' or 'domain' (first at index {bad[:5]})")
    seen: dict[str, int] = {}
    dupes = []
    for it in items:
        key = str(it.get("case_id", it["image"]))
        seen[key] = seen.get(key, 0) + 1
        if seen[key] == 2:
            dupes.append(key)
    if dupes:
        raise ConfigError(f"{source}: duplicate case ids / images {dupes[:5]}")


#: optic disc and cup (DoFE): 0 background, 1 rim (disc minus cup), 2 cup; disc = rim + cup
FUNDUS = DatasetSpec("fundus", ("background", "rim", "cup"), {"disc": (1, 2), "cup": (2,)})
#: colorectal polyps (PraNet): 0 background, 1 polyp
POLYP = DatasetSpec("polyp", ("background", "polyp"), {"polyp": (1,)})
#: spinal cord grey matter (SCGM): 0 background, 1 grey matter, 2 white matter; cord = GM + WM
SCGM = DatasetSpec("scgm", ("background", "grey_matter", "white_matter"), {"gm": (1,), "cord": (1, 2)})

DATASETS: dict[str, DatasetSpec] = {s.name: s for s in (FUNDUS, POLYP, SCGM)}


def make_datalist(spec: DatasetSpec, items: Sequence[Mapping[str, Any]], **extra: Any) -> dict[str, Any]:
    """A datalist dict for ``items`` of dataset ``spec``; ``extra`` top-level fields are added.

    Items are sorted by ``(domain, case_id)`` so the file does not depend on scan order.
    """
    validate_items(items, spec.name)
    ordered = sorted((dict(it) for it in items),
                     key=lambda it: (str(it["domain"]), str(it.get("case_id", it["image"]))))
    return {
        **spec.to_dict(),
        "domains": sorted({str(it["domain"]) for it in ordered}),
        **extra,
        "num_items": len(ordered),
        DATALIST_KEY: ordered,
    }


def load_datalist(path: str | os.PathLike) -> dict[str, Any]:
    """Read and validate a datalist JSON written by the adapters (or by hand).

    Paths are returned as written (the adapters write absolute ones). Raises
    :class:`DatasetLayoutError` when the file is missing and :class:`ConfigError` when it
    is not a datalist.
    """
    path = Path(path)
    if not path.is_file():
        raise DatasetLayoutError(f"{path}: datalist file not found")
    obj = read_config_file(path, what="datalist")
    if not isinstance(obj, dict) or DATALIST_KEY not in obj:
        raise ConfigError(f"{path}: a datalist needs a {DATALIST_KEY!r} list of items")
    validate_items(obj[DATALIST_KEY], str(path))
    if "class_names" in obj:
        validate_regions(obj["class_names"], obj.get("regions", {}))
    return obj
