"""Leave-one-domain-out splits for cross-domain semi-supervised domain generalisation (CD-SSDG).

One split holds out a **test domain** (untouched: no image of it is used in training or
model selection) and takes labels from one **labelled source domain**; the other source
domains give unlabelled images:

- ``validation``: ``val_ratio`` of the labelled domain's pool, held out for model
  selection (chosen before the labelled subset, so it is the same for every
  ``labeled_ratio`` with the same seed);
- ``labeled``: ``labeled_ratio`` of the rest of that pool (at least one case);
- ``unlabeled``: the pools of the other source domains, plus (``labeled_rest="unlabeled"``,
  the default, as in semi-supervised practice) the labelled domain's cases left over by
  ``labeled_ratio < 1``; their labels move to ``hidden_label`` (for diagnostics such as
  pseudo-label quality, never for training) or are dropped (``keep_hidden_labels=False``);
- ``test``: the test domain's cases.

**Pools.** When items carry a predefined ``split`` (the fundus release has ``train`` and
``test`` folders per domain), source domains draw from their ``train`` items and the test
domain is evaluated on its ``test`` items, as the DoFE benchmark does; the other folders
are not used. Without predefined splits every item of a domain is in its pool.

**Groups.** Items sharing a ``subject`` (e.g. the axial slices of one SCGM volume) are
kept together, so no subject is both in ``labeled`` and ``validation``.

**Determinism.** Items are sorted by ``case_id``, groups are shuffled with a generator
seeded by ``(seed, domain)``; the same datalist and arguments give the same file.

The saved JSON has the parts as MONAI datalist lists (``load_decathlon_datalist(path,
data_list_key="labeled")`` works) and the fields ``dataset``, ``class_names``, ``regions``,
``test_domain``, ``labeled_domain``, ``unlabeled_domains``, ``labeled_ratio``, ``seed``
plus ``val_ratio``, ``labeled_rest``, ``predefined_splits``, ``counts``, ``synthetic``.

Example
-------
>>> items = [{"image": f"/d/{d}_{i}.png", "label": f"/d/{d}_{i}_l.png", "domain": d, "case_id": f"{d}/{i}"}
...          for d in ("A", "B", "C") for i in range(10)]
>>> split = make_cdssdg_split({"data": items}, test_domain="C", labeled_domain="A", labeled_ratio=0.5)
>>> {k: len(split[k]) for k in ("labeled", "unlabeled", "validation", "test")}
{'labeled': 4, 'unlabeled': 14, 'validation': 2, 'test': 10}
>>> split["unlabeled_domains"]
['A', 'B']
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from medfound.data.datalist import DATALIST_KEY, load_datalist, validate_items
from medfound.errors import ConfigError, DatasetLayoutError
from medfound.utils import atomic_write_json, make_rng, safe_filename

__all__ = [
    "SPLIT_PARTS",
    "make_cdssdg_split",
    "all_cdssdg_splits",
    "save_split",
    "load_split",
    "split_filename",
]

#: the item lists of a split file
SPLIT_PARTS = ("labeled", "unlabeled", "validation", "test")
_PREDEFINED = {"train", "test"}
FORMAT_VERSION = 1


def _case_key(item: Mapping[str, Any]) -> str:
    return str(item.get("case_id", item["image"]))


def _shuffled_groups(items: list[dict], group_key: str, seed: int, domain: str) -> list[list[dict]]:
    groups: dict[str, list[dict]] = {}
    for it in sorted(items, key=_case_key):
        groups.setdefault(str(it.get(group_key, _case_key(it))), []).append(it)
    names = sorted(groups)
    order = make_rng(seed, domain).permutation(len(names))
    return [groups[names[i]] for i in order]


def _require_labels(items: Sequence[Mapping[str, Any]], part: str) -> None:
    unlabeled = [_case_key(it) for it in items if not it.get("label")]
    if unlabeled:
        raise ConfigError(f"{len(unlabeled)} {part} item(s) have no 'label': {unlabeled[:5]}")


def make_cdssdg_split(
    datalist: Mapping[str, Any] | str | os.PathLike,
    test_domain: str,
    labeled_domain: str | None = None,
    labeled_ratio: float = 1.0,
    val_ratio: float = 0.2,
    seed: int = 0,
    labeled_rest: str = "unlabeled",
    keep_hidden_labels: bool = True,
    use_predefined_splits: bool | None = None,
    group_key: str = "subject",
) -> dict[str, Any]:
    """One leave-one-domain-out CD-SSDG split (see the module docstring for the rules).

    Parameters
    ----------
    datalist : a datalist dict (with a ``"data"`` item list) or the path of its JSON.
    test_domain : the unseen domain.
    labeled_domain : the source domain with labels; default the first other domain in sorted order.
    labeled_ratio : fraction of the labelled pool (after validation) that keeps labels, in (0, 1].
    val_ratio : fraction of the labelled domain's pool held out for validation, in [0, 1).
    seed : shuffling seed.
    labeled_rest : ``"unlabeled"`` (default) or ``"drop"``: what happens to the labelled
        domain's cases left over by ``labeled_ratio < 1``.
    keep_hidden_labels : keep unlabelled items' labels under ``hidden_label``.
    use_predefined_splits : use items' ``split`` (``train``/``test``); ``None`` = when every item has one.
    group_key : item field grouping cases that must stay together.

    Returns
    -------
    dict
        The split (JSON-able); write it with :func:`save_split`.
    """
    source = "datalist"
    if isinstance(datalist, (str, os.PathLike)):
        source = str(datalist)
        datalist = load_datalist(datalist)
    if not isinstance(datalist, Mapping) or DATALIST_KEY not in datalist:
        raise ConfigError(f"{source}: expected a datalist with a {DATALIST_KEY!r} item list")
    items = [dict(it) for it in datalist[DATALIST_KEY]]
    validate_items(items, source)
    domains = sorted({str(it["domain"]) for it in items})
    if len(domains) < 2:
        raise ConfigError(f"{source}: leave-one-domain-out needs at least 2 domains, found {domains}")
    if test_domain not in domains:
        raise ConfigError(f"test domain {test_domain!r} is not in the datalist; domains: {domains}")
    sources = [d for d in domains if d != test_domain]
    if labeled_domain is None:
        labeled_domain = sources[0]
    if labeled_domain == test_domain:
        raise ConfigError(f"the labelled domain must differ from the test domain ({test_domain!r})")
    if labeled_domain not in domains:
        raise ConfigError(f"labelled domain {labeled_domain!r} is not in the datalist; domains: {domains}")
    if not 0.0 < float(labeled_ratio) <= 1.0:
        raise ConfigError(f"labeled_ratio must be in (0, 1], got {labeled_ratio}")
    if not 0.0 <= float(val_ratio) < 1.0:
        raise ConfigError(f"val_ratio must be in [0, 1), got {val_ratio}")
    if labeled_rest not in ("unlabeled", "drop"):
        raise ConfigError(f"labeled_rest must be 'unlabeled' or 'drop', got {labeled_rest!r}")

    has_split = all(str(it.get("split", "")) in _PREDEFINED for it in items)
    predefined = has_split if use_predefined_splits is None else bool(use_predefined_splits)
    if predefined and not has_split:
        raise ConfigError(f"{source}: use_predefined_splits needs a 'split' of 'train'/'test' on every item")

    def pool(domain: str, split: str) -> list[dict]:
        return [it for it in items if it["domain"] == domain and (not predefined or it["split"] == split)]

    # labelled domain: validation first, then the labelled subset of the rest
    groups = _shuffled_groups(pool(labeled_domain, "train"), group_key, seed, labeled_domain)
    if not groups:
        raise ConfigError(f"labelled domain {labeled_domain!r} has no training items")
    n_val = int(round(float(val_ratio) * len(groups))) if val_ratio > 0 else 0
    n_val = min(max(n_val, 1 if val_ratio > 0 else 0), len(groups) - 1)
    rest = groups[n_val:]
    n_lab = min(max(1, int(round(float(labeled_ratio) * len(rest)))), len(rest))
    flat = lambda gs: [it for g in gs for it in g]  # noqa: E731
    validation, labeled, leftover = flat(groups[:n_val]), flat(rest[:n_lab]), flat(rest[n_lab:])
    _require_labels(labeled + validation, f"labelled-domain ({labeled_domain})")

    unlabeled_pool = [it for d in sources if d != labeled_domain for it in pool(d, "train")]
    if labeled_rest == "unlabeled":
        unlabeled_pool += leftover
    unlabeled = []
    for it in sorted(unlabeled_pool, key=lambda it: (str(it["domain"]), _case_key(it))):
        it = dict(it)
        label = it.pop("label", None)
        if keep_hidden_labels and label:
            it["hidden_label"] = label
        unlabeled.append(it)
    test = sorted(pool(test_domain, "test"), key=_case_key)
    if not test:
        raise ConfigError(f"test domain {test_domain!r} has no test items")
    _require_labels(test, f"test-domain ({test_domain})")

    parts = {
        "labeled": sorted(labeled, key=_case_key),
        "unlabeled": unlabeled,
        "validation": sorted(validation, key=_case_key),
        "test": test,
    }
    seen: dict[str, str] = {}
    for name, part in parts.items():
        for it in part:
            key = _case_key(it)
            if key in seen:  # cannot happen with unique case ids; guards the contract
                raise ConfigError(f"case {key!r} would be in both {seen[key]!r} and {name!r}")
            seen[key] = name
    return {
        "format_version": FORMAT_VERSION,
        "dataset": datalist.get("dataset", "custom"),
        "class_names": list(datalist.get("class_names", [])),
        "regions": {k: list(v) for k, v in datalist.get("regions", {}).items()},
        "synthetic": bool(datalist.get("synthetic", False)),
        "source": source,
        "test_domain": test_domain,
        "labeled_domain": labeled_domain,
        "unlabeled_domains": sorted({str(it["domain"]) for it in unlabeled}),
        "labeled_ratio": float(labeled_ratio),
        "val_ratio": float(val_ratio),
        "seed": int(seed),
        "labeled_rest": labeled_rest,
        "predefined_splits": predefined,
        "group_key": group_key,
        "counts": {k: len(v) for k, v in parts.items()},
        **parts,
    }


def all_cdssdg_splits(
    datalist: Mapping[str, Any] | str | os.PathLike,
    test_domains: Sequence[str] | None = None,
    labeled_domains: Sequence[str] | None = None,
    **kwargs: Any,
) -> Iterator[dict[str, Any]]:
    """Every leave-one-domain-out split: each test domain with each labelled source domain.

    ``test_domains`` / ``labeled_domains`` restrict the combinations (default: all).
    Further keyword arguments go to :func:`make_cdssdg_split`.

    Raises
    ------
    ConfigError
        When no split results (an empty datalist, a single domain, the labelled domain equal to
        the test domain): asking for splits and getting none is an error, not an empty success.
    """
    source = "datalist"
    if isinstance(datalist, (str, os.PathLike)):
        source = str(datalist)
        datalist = load_datalist(datalist)
    if not isinstance(datalist, Mapping) or not isinstance(datalist.get(DATALIST_KEY), list):
        raise ConfigError(f"{source}: expected a datalist with a {DATALIST_KEY!r} item list")
    items = datalist[DATALIST_KEY]
    if not items:
        raise ConfigError(f"{source}: the datalist has no items, so no split can be made")
    validate_items(items, source)
    domains = sorted({str(it["domain"]) for it in items})
    if len(domains) < 2:
        raise ConfigError(f"{source}: leave-one-domain-out needs at least 2 domains, found {domains}")
    pairs = [(t, lab) for t in (test_domains or domains) for lab in (labeled_domains or domains) if lab != t]
    if not pairs:  # e.g. the only labelled domain asked for is the test domain
        raise ConfigError(f"no split to make: the labelled domain must differ from the test domain "
                          f"(test {list(test_domains or domains)}, labelled {list(labeled_domains or domains)})")
    for test_domain, labeled_domain in pairs:
        yield make_cdssdg_split(datalist, test_domain, labeled_domain, **kwargs)


def split_filename(split: Mapping[str, Any]) -> str:
    """A descriptive file name, e.g. ``fundus_test-Domain1_lab-Domain2_r0.2_s0.json``.

    Dataset and domain names come from the datalist, i.e. from whoever wrote it: each goes
    through :func:`medfound.utils.safe_filename`, so the name never holds a folder part.

    Example
    -------
    >>> split_filename({"dataset": "x", "test_domain": "a/../../b", "labeled_domain": "c", "labeled_ratio": 1.0,
    ...                 "seed": 0})
    'x_test-a_.._.._b_lab-c_r1_s0.json'
    """
    return (f"{safe_filename(split['dataset'])}_test-{safe_filename(split['test_domain'])}"
            f"_lab-{safe_filename(split['labeled_domain'])}_r{float(split['labeled_ratio']):g}"
            f"_s{int(split['seed'])}.json")


def save_split(path: str | os.PathLike, split: Mapping[str, Any]) -> Path:
    """Write a split JSON atomically.

    Warns when a ``domain`` value names an existing path next to the file: MONAI's
    ``load_decathlon_datalist`` would then turn it into a path (read such files with
    :func:`load_split`, or save them elsewhere).
    """
    path = Path(path)
    clashes = sorted({str(it["domain"]) for part in SPLIT_PARTS for it in split[part]
                      if (path.parent / str(it["domain"])).exists()})
    if clashes:
        warnings.warn(f"{path}: domain name(s) {clashes} are also paths in {path.parent}; "
                      "monai's load_decathlon_datalist would rewrite them, use medfound's load_split", stacklevel=2)
    return atomic_write_json(path, split, sort_keys=True)


def load_split(path: str | os.PathLike, part: str | None = None) -> Any:
    """Read a split file: the whole dict, or one part's item list (``"labeled"``, ...).

    Unlike ``load_decathlon_datalist`` it leaves every field as written.
    """
    path = Path(path)
    if not path.is_file():
        raise DatasetLayoutError(f"{path}: split file not found")
    try:
        split = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ConfigError(f"{path}: not valid JSON ({err})") from err
    missing = [k for k in (*SPLIT_PARTS, "test_domain", "labeled_domain") if k not in split]
    if missing:
        raise ConfigError(f"{path}: not a CD-SSDG split file (missing {missing})")
    if part is None:
        return split
    if part not in SPLIT_PARTS:
        raise ConfigError(f"unknown split part {part!r}; choose from {SPLIT_PARTS}")
    return split[part]
