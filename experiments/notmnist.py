"""Semi-supervised learning on 28x28 grayscale images: notMNIST with 100 labels (CPU).

  python -m sslx.main --config=experiments/notmnist.py --workdir=runs/notmnist
  python -m sslx.main --config=experiments/notmnist.py:labels_per_class=25
  # your own 28x28 data: the same recipe, only the path changes
  python -m sslx.main --config=experiments/notmnist.py --config.data.name=npz:/path/mine.npz

Data: ``data/notmnist10k.npz`` in this repository (8,000 train / 2,000 test letters A-J
in many fonts; provenance in ``data/README.md``), found relative to this file, so the
command works from any directory.

The recipe is the default digits job (FixMatch, threshold 0.9, distribution alignment,
in-batch graph pseudo-labels; EMA evaluation) with the choices a 28x28 image needs:
weak view = reflect-padded shift of up to 0.125 of the side (3-4 px) and no flips
(glyphs are not mirror-symmetric); strong view = RandAugment + cutout; the ``convnet``
encoder (a VGG-style BatchNorm CNN with a stride-2 stem, ``sslx/models/small.py``).

Measured (shared 2-core CPU, load 7-15; every run in results/notmnist.json): 90.3 +- 0.4
EMA test accuracy with 100 labels (seeds 0, 1, 2: 90.6, 89.7, 90.7; 26-30 min each there,
about 3.3 min on an idle machine: 300 steps took 51.8 s), vs 93.9
for the same network supervised on all 8,000 labels (``:supervised,labels_per_class=all``)
80.9 for it on the 100 labels alone (``:supervised``) and 79.8 for the digits recipe
unchanged.

Args: ``labels_per_class=N`` (default 10, i.e. 100 labels), ``smoke``; the ablation
rows switch ``model=cnn|convnet``, ``mu=M`` (unlabeled batch = M x labeled batch),
``steps=S``, ``supervised`` (the same network on its labeled subset only; with
``labels_per_class=all``, the upper bound on every label), ``nt_xent=W`` (also NT-Xent
with weight W between each unlabeled image's weak and strong projections, as
``fixmatch_graph_digits.py:nt_xent=W``: all three families in one step), ``rotation=W``
(also rotation prediction with weight W on all four turns of each unlabeled weak view, a
linear head on the features, as S4L adds it to a semi-supervised loss). ``method=NAME`` swaps the
loss for another semi-supervised method on this same recipe (network, views, batch,
schedule, EMA), as the digits table's rows swap it on the digits recipe: any
``experiments/NAME_digits.py`` that defines ``set_method`` (its method, loss terms and
options, with values derived from the batch or steps recomputed for this recipe;
``fixmatch`` is plain FixMatch: threshold 0.95, no distribution alignment, no graph term;
``lp`` is deep label propagation, ``fixmatch_simclr`` FixMatch + NT-Xent):
``python -m sslx.main --config=experiments/notmnist.py:method=flexmatch``.

Why a FixMatch+graph step cost ~12x a supervised step here: ``python
scripts/profile_step_28x28.py`` times each jitted piece alone, interleaved in one process
(the machine was shared, load average ~12, so only ratios within the run count). Its
medians, ms: SmallCNN forward + backward 598 on the supervised 64 images vs 6456 on
FixMatch's 480 (32 labeled + 224 weak + 224 strong, mu = 7): 10.8x, the whole gap.

- 7.5x of it is the images per step;
- the rest: SmallCNN did not use the batch-chunked CPU convolution the WRN/ResNet use
  (``sslx/models/conv.py``), so its weight gradients grew superlinearly with the batch.
  Chunked, the same 480 images take 3465 (1.9x less); fixed in ``SmallCNN``;
- RandAugment + cutout on 224 images (3.5), the weak shift (4.0) and the graph term's
  kNN + 20 CG iterations on 256 points (45) are ~1.5% of a step; compilation is once per
  run (~55 s to the first step).

The recipe's step: mu = 3 (224 images) and the ``convnet`` encoder, whose stride-2 stem
runs every stage at 14x14 or less: 1224 for its 224 images, 5.3x less than the digits
recipe's 6456, at far higher accuracy (results/notmnist.json).
"""

import os

from sslx.config import (load_config_file, load_config_module, number_arg, parse_config_arg,
                         positive_int_arg)

_HERE = os.path.dirname(os.path.abspath(__file__))
_GRAPH = os.path.join(_HERE, "fixmatch_graph_digits.py")
DATA_PATH = os.path.normpath(os.path.join(_HERE, "..", "data", "notmnist10k.npz"))
_SOURCE = "experiments/notmnist.py"
_ARGS = ("labels_per_class", "smoke", "model", "mu", "steps", "supervised", "method", "nt_xent",
         "rotation")
# Methods with a ``set_method`` in ``experiments/<name>_digits.py``.
METHODS = ("fixmatch", "pseudo_label", "pi_model", "mean_teacher", "uda", "vat", "mixmatch",
           "remixmatch", "flexmatch", "freematch", "softmatch", "dash", "adamatch",
           "simmatch", "comatch", "co_training", "self_training", "lp", "fixmatch_simclr")
MODELS = {  # the encoders for 28x28 inputs (notmnist_ssl.py uses "convnet" too)
    "cnn": dict(name="cnn"),
    "convnet": dict(name="convnet", widths=(32, 64, 128)),
}


def get_config(arg=None):
  args = parse_config_arg(arg, _ARGS, source=_SOURCE)
  smoke = bool(args.get("smoke"))
  nt_xent = number_arg(args, "nt_xent", 0, source=_SOURCE, low=0)
  rotation = number_arg(args, "rotation", 0, source=_SOURCE, low=0)
  for added, weight in (("nt_xent", nt_xent), ("rotation", rotation)):
    for other in ("method", "supervised"):
      if weight and other in args:
        raise ValueError(f"{_SOURCE}: {added} adds a term to the recipe's loss; {other} "
                         "replaces that loss, so they are exclusive")
  graph_args = ("smoke" if smoke else "", f"nt_xent={nt_xent}" if nt_xent else "")
  c = load_config_file(_GRAPH, ",".join(a for a in graph_args if a) or None)
  head = {k: v for k, v in c.model.items() if k == "projection_dim"}  # nt_xent's
  c.data.name = "npz:" + DATA_PATH
  lpc = args.get("labels_per_class", 10)
  if lpc == "all":
    c.data.num_labels = -1
  elif isinstance(lpc, int) and lpc > 0:
    c.data.num_labels = 10 * lpc
  else:
    raise ValueError(
        f"{_SOURCE}: labels_per_class must be a positive int or 'all', got {lpc!r}")
  model = args.get("model", "convnet")
  if model not in MODELS:
    raise ValueError(
        f"{_SOURCE}: model must be one of {sorted(MODELS)}, got {model!r}")
  c.model = dict(MODELS[model], **head)
  c.method = "fixmatch+da+graph" + ("+nt_xent" if nt_xent else "")
  if rotation:  # RotNet's term on the unlabeled images (all four turns of each weak view)
    c.loss.terms["rotation"] = rotation
    c.method += "+rotation"
  c.augment.flip = False  # glyphs are not mirror-symmetric
  c.augment.translate = 0.125  # of the side: 3.5 px on 28x28
  c.augment.cutout = 0.25
  c.batch_size = 32
  c.unlabeled_ratio = positive_int_arg(args, "mu", 3, source=_SOURCE)
  c.num_steps = positive_int_arg(args, "steps", 1500, source=_SOURCE)
  c.ema_decay = 0.99
  c.eval_batch_size = 400  # the 2,000 test images in 5 batches
  c.log_every = 100
  c.eval_every = 500
  c.checkpoint_every = 500
  if args.get("supervised"):
    c.method = "supervised"
    c.loss.terms = {"supervised": 1.0}
    c.unlabeled_ratio = 0
    c.batch_size = 64
    c.optimizer.schedule = "cosine"
    c.optimizer.learning_rate = 0.05
    c.optimizer.warmup_steps = 50
  method = args.get("method")
  if method is not None and method not in METHODS:
    raise ValueError(f"{_SOURCE}: method must be one of {list(METHODS)}, got {method!r}")
  if method is not None and args.get("supervised"):
    raise ValueError(f"{_SOURCE}: method={method} and supervised are exclusive (supervised "
                     "trains on the labels alone)")
  if smoke:
    c.num_steps = 6
    c.batch_size = 8
    c.unlabeled_ratio = 0 if args.get("supervised") else 2
    c.log_every = c.eval_every = c.checkpoint_every = 3
    c.eval_batch_size = 400
    c.model = dict(dict(name="convnet", widths=(8, 16)) if model == "convnet"
                   else dict(name="cnn", width=8), **head)
  if method is not None:   # last: its derived values see this recipe's batch and steps
    module = load_config_module(os.path.join(_HERE, f"{method}_digits.py"))
    module.set_method(c, smoke=smoke)
  return c
