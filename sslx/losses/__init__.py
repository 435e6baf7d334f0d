"""Loss functions: pure, jittable, importable without the trainer.

``import sslx.losses`` pulls in jax, numpy and chex only (no TensorFlow, tfds, orbax or
the trainer). Every function computes in float32 and accepts bfloat16 inputs.
"""

from sslx.losses.classification import accuracy, cross_entropy
from sslx.losses.consistency import fixmatch_consistency, softmax_mse
from sslx.losses.contrastive import alignment, contrastive_accuracy, nt_xent, uniformity
from sslx.losses.self_supervised import byol_loss
from sslx.losses.graph import (GraphTargets, batch_label_propagation, knn_graph, knn_search,
                               lp_pseudo_labels, propagate, weighted_pseudo_label_loss)

__all__ = ["GraphTargets", "accuracy", "alignment", "batch_label_propagation", "byol_loss",
           "contrastive_accuracy", "cross_entropy", "fixmatch_consistency", "knn_graph",
           "knn_search", "lp_pseudo_labels", "nt_xent", "propagate", "softmax_mse", "uniformity",
           "weighted_pseudo_label_loss"]
