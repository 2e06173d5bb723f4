"""A tiny 2D client of the medfound MONAI Label app: the annotation loop for fundus/polyp photographs.

It uses MONAI Label's own Python client (``monailabel.client.MONAILabelClient``, shipped with
MONAI Label 0.8.5; needs the ``label`` environment) against a running server:

1. ``GET /info/``: the served models, strategies and trainers;
2. ``POST /activelearning/<strategy>``: the next unlabelled image to annotate;
3. ``POST /infer/<model>``: the model's mask for it (a PNG of class indices, same size as the
   photograph), saved as ``<out>/<image>_<model>.png`` together with a colour overlay
   ``<image>_<model>_overlay.png`` to look at;
4. with ``--submit``: ``PUT /datastore/label``: the mask (after you corrected it, e.g. in any
   image editor that keeps the class indices) becomes the image's final label, so the next
   training (``POST /train/<model>``) counts it as labelled.

Example (server started as in ``examples/monailabel/README.md``)::

    python examples/monailabel/client_2d.py --server http://127.0.0.1:8000 \\
        --model dac_fundus --strategy dac_fundus_disagreement --out masks
"""

from __future__ import annotations

import argparse
import io
import json
import shutil
import sys
import tempfile
from pathlib import Path
from urllib.parse import quote
from urllib.request import urlopen

import numpy as np
from monailabel.client import MONAILabelClient
from PIL import Image

#: overlay colours of class indices 1, 2, ... (class 0, background, stays transparent)
COLOURS = np.array([[255, 64, 64], [64, 160, 255], [64, 255, 96], [255, 224, 64]], dtype=np.float64)


def overlay(photo: np.ndarray, mask: np.ndarray, alpha: float = 0.45) -> np.ndarray:
    """The photograph (H, W, 3) with each class > 0 of ``mask`` (H, W) blended in its colour."""
    out = photo[..., :3].astype(np.float64).copy()
    for k in range(1, int(mask.max()) + 1):
        out[mask == k] = (1 - alpha) * out[mask == k] + alpha * COLOURS[(k - 1) % len(COLOURS)]
    return out.round().astype(np.uint8)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--server", default="http://127.0.0.1:8000")
    parser.add_argument("--model", default="dac_fundus", help="infer model (see GET /info/)")
    parser.add_argument("--strategy", default="random", help="active-learning strategy (see GET /info/)")
    parser.add_argument("--image", help="segment this image id instead of asking the strategy")
    parser.add_argument("--out", default="masks", help="folder for the mask and its overlay")
    parser.add_argument("--submit", action="store_true", help="save the mask as the image's final label")
    args = parser.parse_args(argv)

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    # The client saves a result under the server's file name in its tmpdir. With the default
    # (/tmp) and the server on the same machine that is the server's own temporary file, which
    # the server deletes after answering: the mask could vanish before it was moved (seen in CI).
    # A folder of this run's own keeps the two apart.
    with tempfile.TemporaryDirectory(prefix="client_2d_") as received:
        return segment(MONAILabelClient(args.server, tmpdir=received), args, out)


def segment(client: MONAILabelClient, args: argparse.Namespace, out: Path) -> int:
    """Ask the strategy for an image (or take ``--image``), segment it, save the mask and its overlay."""
    info = client.info()
    print(f"server {info['name']} {info['version']}: models {sorted(info['models'])}, "
          f"strategies {sorted(info['strategies'])}, trainers {sorted(info['trainers'])}")
    if args.model not in info["models"]:
        print(f"model {args.model!r} is not served (or has no weights yet: train it first)", file=sys.stderr)
        return 2
    image = args.image
    if image is None:
        sample = client.next_sample(args.strategy, {})
        if not sample.get("id"):
            print(f"strategy {args.strategy!r}: no unlabelled image left", file=sys.stderr)
            return 1
        image = sample["id"]
        print(f"next image ({args.strategy}): {image}")
    mask_file, result = client.infer(args.model, image, {})
    if result.get("format") == "classification":  # a UMedPT classification head: the JSON is the answer
        if mask_file:
            Path(mask_file).unlink(missing_ok=True)  # the same JSON as a file
        print(json.dumps({k: v for k, v in result.items() if k not in ("latencies", "centroids")}, indent=2))
        return 0
    mask_path = out / f"{image}_{args.model}.png"
    shutil.move(mask_file, mask_path)
    mask = np.asarray(Image.open(mask_path))
    print(f"mask {mask_path}: {mask.shape[1]} x {mask.shape[0]} px, classes present {result['classes_present']} "
          f"({result['label_names']})")
    # MONAI Label 0.8.5's Python client has no image download: plain GET /datastore/image
    with urlopen(f"{args.server.rstrip('/')}/datastore/image?image={quote(image)}", timeout=60) as answer:
        photo = np.asarray(Image.open(io.BytesIO(answer.read())).convert("RGB"))
    Image.fromarray(overlay(photo, mask)).save(out / f"{image}_{args.model}_overlay.png")
    if args.submit:
        print("saved as final label:", client.save_label(image, str(mask_path)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
