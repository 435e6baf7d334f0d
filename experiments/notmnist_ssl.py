"""Self-supervised learning on 28x28 grayscale images: each digits recipe on notMNIST (CPU).

  python -m sslx.main --config=experiments/notmnist_ssl.py:method=simclr --workdir=runs/nm_simclr
  python -m sslx.main --config=experiments/notmnist_ssl.py:method=byol,labels_per_class=25
  # your own 28x28 data: the same recipe, only the path changes
  python -m sslx.main --config=experiments/notmnist_ssl.py:method=vicreg \\
      --config.data.name=npz:/path/mine.npz

``method=NAME`` is one of ``METHODS``: the config is ``experiments/NAME_digits.py``'s (its
loss, views, heads, optimizer, batch, steps, online probe on stop_gradient(features), and
the final linear probe + weighted kNN on the labeled subset, with the raw-pixel probe for
``simclr``) with only what a 28x28 image needs changed, by one rule for every method, so the
rows compare with each other and with their digits rows:

- data: ``data/notmnist10k.npz`` (as ``notmnist.py``), ``labels_per_class`` labels a class
  (default 10, i.e. 100) for the probes; the test set's 2,000 images in 5 batches;
- encoder: the small CNN becomes ``notmnist.py``'s ``convnet`` (stride-2 stem, widths 32,
  64, 128), its heads unchanged; MAE keeps its ViT with 7x7 patches, the digits recipe's 16
  patches an image;
- sizes in pixels scale with the side (28 / 8): multi-crop's 8x8 global and 4x4 local crops
  become 28x28 and 14x14. Crop areas, strengths and flips are fractions or flags and stay.

Args: ``method=NAME`` (default ``simclr``), ``labels_per_class=N``, ``smoke``.
"""

import os

from sslx.config import load_config_file, load_config_module, parse_config_arg, positive_int_arg

_HERE = os.path.dirname(os.path.abspath(__file__))
_NOTMNIST = load_config_module(os.path.join(_HERE, "notmnist.py"))  # its file and encoder
DATA_PATH = _NOTMNIST.DATA_PATH
_SOURCE = "experiments/notmnist_ssl.py"
_ARGS = ("method", "labels_per_class", "smoke")
METHODS = ("simclr", "byol", "rotation", "simsiam", "barlow_twins", "vicreg", "moco", "dino",
           "swav", "nnclr", "mae")
_SIDE, _DIGITS_SIDE = 28, 8


def get_config(arg=None):
  args = parse_config_arg(arg, _ARGS, source=_SOURCE)
  method = args.get("method", "simclr")
  if method not in METHODS:
    raise ValueError(f"{_SOURCE}: method must be one of {list(METHODS)}, got {method!r}")
  smoke = bool(args.get("smoke"))
  lpc = positive_int_arg(args, "labels_per_class", 10, source=_SOURCE)
  c = load_config_file(os.path.join(_HERE, f"{method}_digits.py"), "smoke" if smoke else None)
  c.data.name = "npz:" + DATA_PATH
  c.data.num_labels = 10 * lpc
  c.eval_batch_size = 400
  model = c.model.to_dict()
  if model["name"] == "cnn":
    width = model.pop("width", None)
    model.update(_NOTMNIST.MODELS["convnet"])
    if smoke:
      model["widths"] = (width, 2 * width)
  elif model["name"] == "vit":  # 2x2 -> 7x7 patches: 16 an image on either side
    model["patch_size"] = c.mae.patch_size = model["patch_size"] * _SIDE // _DIGITS_SIDE
  else:
    raise ValueError(f"{_SOURCE}: {method}_digits.py's encoder {model['name']!r} has no 28x28 form")
  c.model = model
  for kind in ("global", "local"):
    size = c.augment[f"multicrop_{kind}_size"]
    c.augment[f"multicrop_{kind}_size"] = size * _SIDE // _DIGITS_SIDE
  return c
