"""Loss functions: pure, jittable, importable without the trainer.

``import sslx.losses`` pulls in jax, numpy and chex only (no TensorFlow, tfds, orbax or
the trainer). Every function computes in float32 and accepts bfloat16 inputs.
"""

from sslx.losses.classification import accuracy, cross_entropy
from sslx.losses.consistency import fixmatch_consistency
from sslx.losses.contrastive import alignment, contrastive_accuracy, nt_xent, uniformity

__all__ = ["accuracy", "alignment", "contrastive_accuracy", "cross_entropy",
           "fixmatch_consistency", "nt_xent", "uniformity"]
