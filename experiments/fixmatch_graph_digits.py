"""The default experiment: FixMatch + distribution alignment + in-batch graph pseudo-labels
on scikit-learn's digits (offline, CPU, a few minutes). The best recipe found on digits.

  python -m sslx.main          # runs this config into runs/fixmatch_graph_digits
  python -m sslx.main --config=experiments/fixmatch_graph_digits.py:labels_per_class=5

Three terms over one forward pass of labeled-weak, unlabeled-weak and unlabeled-strong
images: supervised CE; FixMatch consistency (threshold 0.9, weak predictions aligned to a
uniform class prior, ReMixMatch's distribution alignment); and ``graph``: each step, a
kNN graph over the weak-view features of the labeled and unlabeled images, labels spread
over it by conjugate gradient, and the resulting certainty- and class-weighted
pseudo-labels as targets for the strong views. The graph term gives good targets early,
while the classifier's own confident predictions are still few and often wrong.

Args: ``labels_per_class=N`` (default 2, i.e. 20 labels), ``smoke``, ``nt_xent=W``: also
add NT-Xent with weight W between the projections of each unlabeled image's weak and
strong views (as ``fixmatch_simclr_digits.py``: T = 0.5, a 64-d projection head, no extra
forward pass), all three method families in one step.
"""

import os

from sslx.config import load_config_file, number_arg, parse_config_arg

_FIXMATCH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixmatch_digits.py")
_SOURCE = "fixmatch_graph_digits.py"
_ARGS = ("labels_per_class", "smoke", "nt_xent")


def get_config(arg=None):
  args = parse_config_arg(arg, _ARGS, _SOURCE)
  nt_xent = number_arg(args, "nt_xent", 0, source=_SOURCE, low=0)
  passed = ",".join(f"{k}={v}" for k, v in args.items() if k != "nt_xent")
  c = load_config_file(_FIXMATCH, f"{passed},da=1,threshold=0.9,graph=1".lstrip(","))
  c.method = "fixmatch+da+graph"
  if nt_xent:
    c.method += "+nt_xent"
    c.model = dict(c.model.to_dict(), projection_dim=64 if not args.get("smoke") else 16)
    c.loss.terms = dict(c.loss.terms.to_dict(), nt_xent=float(nt_xent))
    c.nt_xent.views = "weak_strong"
    c.nt_xent.temperature = 0.5
  if not args.get("smoke"):
    c.num_steps = 1500
    c.ema_decay = 0.99  # a short run: a slow EMA would still remember the initialisation
  return c
