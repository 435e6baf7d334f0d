"""Evaluating learned features: a linear probe trained to convergence and a weighted kNN.

Self-supervised encoders are judged by how well a simple classifier on their *frozen*
features does:

* :func:`linear_probe_accuracy`: multinomial logistic regression on standardised
  features, full batch, L-BFGS to convergence (SimCLR's linear evaluation; for a
  semi-supervised split the probe sees only the labeled subset).
* :func:`knn_accuracy`: the weighted kNN classifier of InstDisc (Wu et al. 2018), also
  used by solo-learn: cosine similarity, the k = 200 nearest training points vote with
  weight ``exp(sim / T)``, T = 0.07.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax

from sslx.methods import model_variables


def extract_features(model, params, model_state, normalize, images: np.ndarray, *,
                     batch_size: int = 512) -> np.ndarray:
  """Pre-classifier features ``[N, D]`` of `images` in eval mode (host numpy in and out)."""

  @jax.jit
  def features(x):
    return model.apply(model_variables(params, model_state), normalize(x),
                       train=False)["features"]

  out = []
  for start in range(0, len(images), batch_size):
    chunk = images[start:start + batch_size]
    n = len(chunk)
    if n < batch_size and start > 0:  # pad: one compiled shape for all chunks
      chunk = np.concatenate([chunk, np.zeros((batch_size - n, *chunk.shape[1:]), chunk.dtype)])
    out.append(np.asarray(features(jnp.asarray(chunk)))[:n])
  return np.concatenate(out).astype(np.float32)


def knn_accuracy(train_features, train_labels, test_features, test_labels, *, num_classes: int,
                 k: int = 200, temperature: float = 0.07, block_size: int = 1024) -> float:
  """Weighted kNN accuracy (cosine similarity, votes ``exp(sim / temperature)``)."""
  if temperature <= 0:
    raise ValueError(f"temperature must be > 0, got {temperature}")
  train = _l2_normalize(jnp.asarray(train_features, jnp.float32))
  labels = jnp.asarray(train_labels, jnp.int32)
  k = int(min(k, train.shape[0]))

  @jax.jit
  def predict(queries):
    sims, idx = jax.lax.top_k(_l2_normalize(queries) @ train.T, k)
    votes = jnp.exp(sims / temperature)[..., None] * jax.nn.one_hot(labels[idx], num_classes)
    return jnp.argmax(votes.sum(1), -1)

  test = np.asarray(test_features, np.float32)
  preds = np.concatenate([np.asarray(predict(jnp.asarray(test[s:s + block_size])))
                          for s in range(0, len(test), block_size)])
  return float(np.mean(preds == np.asarray(test_labels)))


def linear_probe_accuracy(train_features, train_labels, test_features, test_labels, *,
                          num_classes: int, l2: float = 1e-4, max_iters: int = 500) -> float:
  """Test accuracy of a logistic-regression probe fit to convergence with L-BFGS.

  Features are standardised with the training mean and std; the objective is the mean
  cross-entropy plus ``l2 * |W|^2``.
  """
  x = np.asarray(train_features, np.float32)
  mean, std = x.mean(0), x.std(0) + 1e-6
  x = jnp.asarray((x - mean) / std)
  xt = jnp.asarray((np.asarray(test_features, np.float32) - mean) / std)
  y = jnp.asarray(train_labels, jnp.int32)
  params = {"w": jnp.zeros((x.shape[1], num_classes)), "b": jnp.zeros((num_classes,))}

  def objective(p):
    logits = x @ p["w"] + p["b"]
    ce = optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
    return ce + l2 * jnp.sum(p["w"] ** 2)

  solver = optax.lbfgs()
  value_and_grad = optax.value_and_grad_from_state(objective)

  @jax.jit
  def fit(p):
    def body(carry):
      p, state, i = carry
      value, grad = value_and_grad(p, state=state)
      updates, state = solver.update(grad, state, p, value=value, grad=grad,
                                     value_fn=objective)
      return optax.apply_updates(p, updates), state, i + 1

    def cond(carry):
      _, state, i = carry
      grad = optax.tree.get(state, "grad")
      return (i == 0) | ((i < max_iters) & (optax.tree.norm(grad) > 1e-5))

    p, _, _ = jax.lax.while_loop(cond, body, (p, solver.init(p), 0))
    return p

  p = fit(params)
  preds = jnp.argmax(xt @ p["w"] + p["b"], -1)
  return float(jnp.mean(preds == jnp.asarray(test_labels)))


def _l2_normalize(x):
  return x / jnp.maximum(jnp.linalg.norm(x, axis=-1, keepdims=True), 1e-12)
