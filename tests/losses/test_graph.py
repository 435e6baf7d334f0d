"""Tests for sslx.losses.graph: the weighted pseudo-label loss (and the moved names)."""

import math
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

import sslx.graph
from sslx.losses import graph


def test_weighted_pseudo_label_loss_hand_computed():
  logits = jnp.array([[0.0, 0.0], [math.log(3), 0.0]])
  omega = jnp.array([1.0, 0.5])
  zeta = jnp.array([2.0, 1.0])
  loss = graph.weighted_pseudo_label_loss(logits, jnp.array([0, 1]), omega,
                                          zeta)
  expected = (1 * 2 * math.log(2) + 0.5 * 1 * math.log(4)) / 2
  np.testing.assert_allclose(float(loss), expected, rtol=1e-6)
  ignored = graph.weighted_pseudo_label_loss(logits, jnp.array([0, -1]),
                                             omega, zeta)
  np.testing.assert_allclose(float(ignored), 2 * math.log(2) / 2, rtol=1e-6)
  jitted = jax.jit(graph.weighted_pseudo_label_loss)(
      logits, jnp.array([0, 1]), omega, zeta)
  np.testing.assert_allclose(float(jitted), expected, rtol=1e-6)
  check_grads(lambda l: graph.weighted_pseudo_label_loss(
      l, jnp.array([0, 1]), omega, zeta), (logits,), order=1,
              modes=("rev",))


def test_weighted_pseudo_label_loss_errors():
  logits = jnp.zeros((3, 2))
  ones = jnp.ones(3)
  with pytest.raises(ValueError, match=r"`pseudo_labels` must be in \[-1, 2\)"):
    graph.weighted_pseudo_label_loss(logits, jnp.array([0, 2, 1]), ones,
                                     jnp.ones(2))
  with pytest.raises(ValueError, match="one entry per example"):
    graph.weighted_pseudo_label_loss(logits, jnp.array([0, 1]), ones,
                                     jnp.ones(2))
  with pytest.raises(ValueError, match=r"`sample_weights` must have shape"):
    graph.weighted_pseudo_label_loss(logits, jnp.array([0, 1, 1]),
                                     jnp.ones(2), jnp.ones(2))
  with pytest.raises(ValueError, match=r"`class_weights` must have shape"):
    graph.weighted_pseudo_label_loss(logits, jnp.array([0, 1, 1]), ones,
                                     jnp.ones(3))


def test_engines_moved_to_sslx_graph_with_deprecation():
  import sslx.losses  # pylint: disable=import-outside-toplevel
  assert set(sslx.losses.__all__).isdisjoint(sslx.graph.__all__)
  for module in (graph, sslx.losses):
    for name in sslx.graph.__all__:
      with pytest.warns(DeprecationWarning, match=f"sslx.graph.{name}"):
        assert getattr(module, name) is getattr(sslx.graph, name)
  with warnings.catch_warnings():
    warnings.simplefilter("error")
    with pytest.raises(AttributeError, match="no attribute 'knn_grpah'"):
      graph.knn_grpah  # pylint: disable=pointless-statement
