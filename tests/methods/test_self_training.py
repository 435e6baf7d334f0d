"""Self-training / Noisy Student: rounds and the teacher's momentum, the teacher's targets,
the once-per-round pool labels over a hand-computed sequence, the method on a stand-in
teacher over two rounds against the loop written in numpy, and the teacher swap through
the real trainer."""

import types

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from helpers import load_experiment
from sslx import experiment
from sslx.losses import pool_targets, round_boundary_momentum, round_index, teacher_targets
from sslx.methods import self_training


def _softmax(z):
  z = np.asarray(z, np.float64)
  e = np.exp(z - z.max(-1, keepdims=True))
  return e / e.sum(-1, keepdims=True)


def test_rounds_and_the_teacher_momentum():
  # 10 steps, 3 rounds of 3 (the last takes the remainder): rounds 0 0 0 1 1 1 2 2 2 2.
  got = [int(round_index(s, round_steps=3, num_rounds=3)) for s in range(10)]
  assert got == [0, 0, 0, 1, 1, 1, 2, 2, 2, 2]
  # The teacher becomes the student after the updates to steps 3 and 6 (rounds 1, 2 start),
  # not at 9 (no round 3).
  m = [float(round_boundary_momentum(s, round_steps=3, num_rounds=3)) for s in range(10)]
  assert m == [1, 1, 0, 1, 1, 0, 1, 1, 1, 1]
  assert float(jax.jit(lambda s: round_boundary_momentum(s, round_steps=3, num_rounds=3))(5)) == 0
  with pytest.raises(ValueError, match="round_steps"):
    round_index(0, round_steps=0, num_rounds=2)


def test_teacher_targets():
  z = np.array([[1.0, 2.0, 0.5], [0.0, -1.0, 3.0]], np.float32)
  np.testing.assert_allclose(teacher_targets(z, temperature=2.0), _softmax(z / 2), rtol=1e-6)
  np.testing.assert_allclose(jax.jit(lambda x: teacher_targets(x, temperature=2.0))(z),
                             _softmax(z / 2), rtol=1e-6)
  np.testing.assert_array_equal(teacher_targets(z, soft=False), [[0, 1, 0], [0, 0, 1]])
  np.testing.assert_allclose(teacher_targets(jnp.zeros((1, 4))), [[0.25] * 4])  # hand value
  assert float(jnp.abs(jax.grad(lambda x: teacher_targets(x).sum())(z)).sum()) == 0.0
  with pytest.raises(ValueError, match="temperature"):
    teacher_targets(z, temperature=0.0)


def test_pool_targets_label_each_example_once_per_round():
  pool = jnp.zeros((4, 2))
  rounds = jnp.full((4,), -1, jnp.int32)
  a, b = jnp.array([[1.0, 0.0]]), jnp.array([[0.0, 1.0]])
  # Round 0: example 2 labelled a; drawn again in round 0 with b: keeps a.
  out, pool, rounds, fresh = pool_targets(pool, rounds, jnp.array([2]), a, 0)
  np.testing.assert_array_equal(out, a)
  assert bool(fresh[0])
  out, pool, rounds, fresh = pool_targets(pool, rounds, jnp.array([2]), b, 0)
  np.testing.assert_array_equal(out, a)
  assert not bool(fresh[0])
  # Round 1: relabelled b; the rest of the pool untouched.
  out, pool, rounds, fresh = pool_targets(pool, rounds, jnp.array([2, 0]),
                                          jnp.concatenate([b, a]), 1)
  np.testing.assert_array_equal(out, [[0, 1], [1, 0]])
  np.testing.assert_array_equal(rounds, [1, -1, 1, -1])
  np.testing.assert_array_equal(pool, [[1, 0], [0, 0], [0, 1], [0, 0]])
  with pytest.raises(ValueError, match="indices"):
    pool_targets(pool, rounds, jnp.array([0.0]), a, 1)


def test_method_over_three_rounds_matches_the_loop_in_numpy():
  rng = np.random.default_rng(0)
  k, pool_size, n = 3, 6, 4
  options = ml_collections.ConfigDict(dict(self_training.OPTIONS))
  options.threshold, options.temperature = 0.4, 0.5
  info = types.SimpleNamespace(pool_sizes={"unlabeled": pool_size}, num_classes=k)
  state = self_training.init_state(options, info)
  truth_pool = np.array([0, 1, 2, -1, 1, 0])
  ref_targets, ref_round = np.zeros((pool_size, k)), -np.ones(pool_size, int)
  ref_wrong, ref_repeated = np.zeros(pool_size, bool), np.zeros(pool_size, bool)
  options.num_rounds = 3
  counts = np.zeros(2)
  opinion = rng.normal(size=(pool_size, k)) * 2
  for step in range(9):  # num_steps 9, rounds of 3
    idx = rng.choice(pool_size, n, replace=False)
    # The frozen teacher's logits: an opinion per example (so errors can repeat) + noise.
    teacher = (opinion[idx] + rng.normal(size=(n, k))).astype(np.float32)
    student = rng.normal(size=(n, k)).astype(np.float32)
    ctx = types.SimpleNamespace(
        options=options, state=state, step=step, num_steps=9,
        images={"unlabeled_clean": jnp.zeros((n, 1))},
        outputs={"unlabeled_strong": {"logits": jnp.asarray(student)}},
        batch={"unlabeled_indices": jnp.asarray(idx, jnp.int32),
               "unlabeled_labels": jnp.asarray(truth_pool[idx], jnp.int32)},
        forward=lambda x, params, teacher=teacher, **kw: (
            {"logits": jnp.asarray(teacher)} if params == "teacher" else None))
    loss, metrics, state = self_training.self_training_loss(ctx)
    # The loop in numpy: label on first draw in the round, reuse afterwards.
    r = step // 3
    for j, i in enumerate(idx):
      if ref_round[i] != r:
        new = _softmax(teacher[j] / 0.5)
        previous_wrong = (ref_round[i] >= 1 and truth_pool[i] >= 0
                          and ref_targets[i].argmax() != truth_pool[i])
        ref_wrong[i] = previous_wrong
        ref_repeated[i] = previous_wrong and new.argmax() == ref_targets[i].argmax()
        ref_targets[i], ref_round[i] = new, r
    y = ref_targets[idx]
    mask = y.max(-1) >= 0.4
    ce = -(y * np.log(_softmax(student))).sum(-1)
    expected = (r >= 1) * (mask * ce).mean()
    np.testing.assert_allclose(loss, expected, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(metrics["unsup_loss"], (mask * ce).mean(), rtol=1e-5)
    np.testing.assert_allclose(state["targets"], ref_targets, rtol=1e-5, atol=1e-7)
    np.testing.assert_array_equal(state["labelled_round"], ref_round)
    this_round = (ref_round == r) & (truth_pool >= 0)
    acc = (ref_targets.argmax(-1) == truth_pool)[this_round].mean()
    assert float(metrics["pool_pseudo_label_accuracy"]) == pytest.approx(acc)
    assert float(metrics["pool_coverage"]) == pytest.approx(np.mean(ref_round == r))
    now = ref_round == r
    rate = ref_repeated[now].sum() / max(ref_wrong[now].sum(), 1)
    assert float(metrics["pool_repeated_error_rate"]) == pytest.approx(rate)
    counts += [ref_wrong[now].sum(), ref_repeated[now].sum()]
  # The draws above exercise both outcomes of a previously wrong label.
  assert counts[1] > 0 and counts[0] > counts[1], counts


def test_option_errors_name_the_field_and_the_teacher_view():
  config = load_experiment("self_training_digits", "smoke")
  config.self_training.num_rounds = 0
  with pytest.raises(ValueError, match="self_training.num_rounds"):
    experiment.setup(config, devices=jax.devices()[:1])
  options = ml_collections.ConfigDict(dict(self_training.OPTIONS))
  assert self_training.views(options)["unlabeled_clean"].augment == "none"
  options.teacher_view = "weak"
  assert self_training.views(options)["unlabeled_weak"].augment == "weak"
  options.teacher_view = "strong"
  assert "self_training.teacher_view" in self_training.option_errors(options)[0]


def test_the_teacher_is_frozen_within_a_round_and_is_the_student_after():
  """Smoke config: 6 steps, 3 rounds of 2. The teacher is the initial model during round 0,
  the student after the update to step 2 from then on through round 1."""
  exp = experiment.setup(load_experiment("self_training_digits", "smoke"),
                         devices=jax.devices()[:1])
  kernel = lambda tree: np.asarray(tree["model"]["classifier"]["kernel"])
  teacher = lambda s: kernel(s.method_params["self_training"]["teacher"])
  init = kernel(exp.state.params)
  state = exp.state
  state, m0 = exp.train_step(state, exp.input.arrays)
  np.testing.assert_array_equal(teacher(state), init)  # frozen
  assert float(m0["loss/self_training"]) == 0.0 and float(m0["self_training/round"]) == 0
  state, _ = exp.train_step(state, exp.input.arrays)  # the update to step 2 starts round 1
  at_boundary = kernel(state.params)
  np.testing.assert_array_equal(teacher(state), at_boundary)
  state, m2 = exp.train_step(state, exp.input.arrays)
  np.testing.assert_array_equal(teacher(state), at_boundary)  # frozen again
  assert not np.allclose(kernel(state.params), at_boundary)
  assert float(m2["self_training/round"]) == 1 and float(m2["self_training/active"]) == 1
  assert np.isfinite(float(m2["loss"])) and float(m2["loss/self_training"]) > 0
