"""Graph engines: kNN search (exact, approximate) and label propagation.

Not losses: these build the graph and spread labels over it; the loss over the resulting
pseudo-labels is :func:`sslx.losses.weighted_pseudo_label_loss`. Like ``sslx.losses``,
``import sslx.graph`` pulls in jax, numpy and chex only (no TensorFlow, tfds, orbax or the
trainer).

* :mod:`sslx.graph.knn`: :func:`knn_graph`, :func:`knn_search`.
* :mod:`sslx.graph.propagation`: :func:`propagate`, :func:`lp_pseudo_labels`,
  :func:`batch_label_propagation` (:class:`GraphTargets`).
"""

from sslx.graph.knn import knn_graph, knn_search
from sslx.graph.propagation import (GraphTargets, batch_label_propagation, lp_pseudo_labels,
                                    propagate)

__all__ = ["GraphTargets", "batch_label_propagation", "knn_graph", "knn_search",
           "lp_pseudo_labels", "propagate"]
