"""Loss functions: pure, jittable, importable without the trainer.

``import sslx.losses`` pulls in jax, numpy and chex only (no TensorFlow, tfds, orbax or
the trainer). Every function computes in float32 and accepts bfloat16 inputs.

The graph engines (kNN search, label propagation) are in :mod:`sslx.graph`; their old names
here (``sslx.losses.knn_graph`` ...) still resolve, with a ``DeprecationWarning``.
"""

from sslx.losses import graph as _graph
from sslx.losses.adaptive import (align_distribution, dash_selection, dash_threshold,
                                  distribution_alignment_update, flexmatch_learning_effect,
                                  flexmatch_select, flexmatch_thresholds,
                                  freematch_fairness_loss, freematch_thresholds, freematch_update,
                                  masked_pseudo_label_loss, pseudo_label_diagnostics,
                                  relative_threshold, softmatch_update, softmatch_weights)
from sslx.losses.classification import accuracy, cross_entropy
from sslx.losses.clustering import (dino_center_update, dino_loss, dino_teacher_temperature,
                                    sinkhorn_knopp, swav_loss)
from sslx.losses.consistency import fixmatch_consistency, softmax_mse
from sslx.losses.contrastive import alignment, contrastive_accuracy, nt_xent, uniformity
# SimMatch / CoMatch (issue 16): memories of embeddings that calibrate pseudo-labels.
from sslx.losses.contrastive_graph import (comatch_contrastive_loss, comatch_enqueue,
                                           comatch_memory_smoothing, comatch_pseudo_label_graph,
                                           distribution_queue_update, simmatch_bank_update,
                                           simmatch_in_loss, simmatch_pseudo_labels)
from sslx.losses.graph import weighted_pseudo_label_loss
from sslx.losses.self_supervised import byol_loss
# The self-supervised family (issue 17): simsiam, barlow_twins, vicreg, moco.
from sslx.losses.decorrelation import barlow_twins_loss, vicreg_loss
from sslx.losses.momentum_contrast import moco_enqueue, moco_infonce, moco_v2_infonce
from sslx.losses.nearest_neighbour import nearest_neighbours, nnclr_loss  # NNCLR (issue 17)
from sslx.losses.masked_image import mae_loss, patchify, random_masking, unpatchify  # MAE
from sslx.losses.self_supervised import simsiam_loss
from sslx.losses.semi_supervised import pseudo_label_loss
from sslx.losses.semi_supervised import tsa_cross_entropy, tsa_threshold, uda_consistency
from sslx.losses.semi_supervised import entropy_loss, kl_with_logits, vat_perturbation
from sslx.losses.semi_supervised import mixmatch_loss, mixup, mixup_lambda, sharpen
from sslx.losses.holistic import class_prior, remixmatch_loss, soft_cross_entropy
from sslx.losses.self_training import (co_training_js_divergence, co_training_view_difference,
                                       cross_pseudo_label_loss, exp_rampup, fgsm_perturbation,
                                       pool_targets, round_boundary_momentum,
                                       round_index, teacher_targets)

__all__ = ["accuracy", "alignment", "byol_loss", "contrastive_accuracy", "cross_entropy",
           "fixmatch_consistency", "nt_xent", "softmax_mse", "uniformity",
           "weighted_pseudo_label_loss"]
__all__ += [  # the adaptive-threshold family (sslx/losses/adaptive.py)
    "align_distribution",
    "dash_selection",
    "dash_threshold",
    "distribution_alignment_update",
    "flexmatch_learning_effect",
    "flexmatch_select",
    "flexmatch_thresholds",
    "freematch_fairness_loss",
    "freematch_thresholds",
    "freematch_update",
    "masked_pseudo_label_loss",
    "pseudo_label_diagnostics",
    "relative_threshold",
    "softmatch_update",
    "softmatch_weights",
]
__all__ += [  # the self-supervised family (decorrelation.py, momentum_contrast.py, ...)
    "barlow_twins_loss",
    "moco_enqueue",
    "moco_infonce",
    "moco_v2_infonce",
    "simsiam_loss",
    "vicreg_loss",
]
__all__ += ["nearest_neighbours", "nnclr_loss"]  # NNCLR (nearest_neighbour.py)
__all__ += ["mae_loss", "patchify", "random_masking", "unpatchify"]  # MAE (masked_image.py)
__all__ += ["pseudo_label_loss"]
__all__ += ["tsa_cross_entropy", "tsa_threshold", "uda_consistency"]
__all__ += [  # clustering / self-distillation (clustering.py): DINO, SwAV
    "dino_center_update", "dino_loss", "dino_teacher_temperature", "sinkhorn_knopp", "swav_loss",
]
__all__ += ["entropy_loss", "kl_with_logits", "vat_perturbation"]
__all__ += ["mixmatch_loss", "mixup", "mixup_lambda", "sharpen"]
__all__ += [  # the contrastive-graph family (sslx/losses/contrastive_graph.py)
    "comatch_contrastive_loss", "comatch_enqueue", "comatch_memory_smoothing",
    "comatch_pseudo_label_graph", "distribution_queue_update", "simmatch_bank_update",
    "simmatch_in_loss", "simmatch_pseudo_labels",
]
__all__ += ["class_prior", "remixmatch_loss", "soft_cross_entropy"]
__all__ += ["co_training_js_divergence", "co_training_view_difference", "cross_pseudo_label_loss",
            "exp_rampup", "fgsm_perturbation", "pool_targets",
            "round_boundary_momentum", "round_index", "teacher_targets"]


def __getattr__(name: str):
  return _graph._moved(__name__, name)  # pylint: disable=protected-access
