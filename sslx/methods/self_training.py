r"""Self-training, plain and as Noisy Student (Xie et al., "Self-training with Noisy Student
improves ImageNet classification", CVPR 2020): a teacher labels the unlabeled pool, a
noised student learns from labels + pseudo-labels, the student becomes the teacher; N
rounds in one run.

Round r covers steps ``[r * R, (r + 1) * R)`` with ``R = num_steps // num_rounds`` (the
last round takes the remainder). The teacher is the method's target tree ``teacher``:
momentum 1 within a round (frozen) and 0 after the update that starts a round, so it is
the student as it stood at that boundary (:func:`sslx.losses.round_boundary_momentum`).
Round 0 has no trained teacher: its student learns from the labels alone (the
``supervised`` term) and becomes the first teacher, as the paper's step 1. From round 1
the unlabeled term is

    loss = unsup_weight * 1/B sum_i 1[max_c y_ic >= threshold] * H(y_i, p_student(strong(u_i)))

with ``y_i`` the teacher's soft targets softmax(z / T) (the official scripts'
``teacher_softmax_temp=1``; ``soft_targets=False``: one-hot, the flag's -1), and the
student noised by RandAugment (``unlabeled_strong``). The pool is labelled once per
round: the state keeps a target for every pool example and the round it was made in;
the first time an example is drawn in a round the frozen teacher labels it, later draws
reuse that label (:func:`sslx.losses.pool_targets`), so every example keeps one label
per round as in the official pipeline, which predicts the whole unlabeled set with the
teacher between rounds.

Where this differs from the paper and its code, and why:

* the student is NOT re-initialised at a round boundary (continued training): the
  trainer's optimizer state and parameters are not a method's to reset; the paper trains
  each student from scratch (and equal-or-larger than the teacher: here the same model);
* noise is RandAugment on the unlabeled images only (the ``supervised`` term reads weak
  labeled views); no dropout or stochastic depth: sslx's models have neither;
* the pool is labelled lazily (above), not up front, because the ``refresh`` hook that
  walks the pool sees neither logits nor a method's target trees; the teacher sees the
  clean images (``teacher_view='none'``, as the paper; the view stays out of the
  student's shared pass and BatchNorm batch; the measurements below predate that) and runs in train mode without touching the running
  statistics (its own are not kept, and the online ones follow the student). Measured,
  one seed, 20 labels, on a shared loaded CPU: ``python -m sslx.main
  --config=experiments/self_training_digits.py --workdir=W --config.num_steps=600
  --config.eval_every=150 --config.checkpoint_every=600 --config.log_every=50`` (4
  rounds of 150 steps) gave pool
  pseudo-label accuracies in rounds 1-3 of 0.784 / 0.827 / 0.859 and a final raw test
  accuracy of 0.889; with ``--config.self_training.teacher_view=weak`` 0.676 / 0.786 /
  0.826 and 0.867;
* labels and pseudo-labels are sampled by the run's batch sizes (FixMatch's ratio), not
  the paper's unlabeled-to-labeled batch ratio; no class balancing of the pseudo-labels;
  ``threshold`` 0 (the paper filters below 0.3 on ImageNet).

Diagnostics: the round, the mask rate, the share of the batch labelled now, the batch's
pseudo-label accuracy, and over the pool: the share labelled in this round, their
accuracy against the known unlabeled labels (the round's pseudo-label accuracy; read it
at the last log step of a round) and, the confirmation bias, the share of the examples
the previous round's teacher got wrong to which this round's teacher gives the same wrong
class (``pool_repeated_error_rate``, rounds >= 2: round 0's teacher is untrained).
``scripts/plot_rounds.py`` draws them per round, over seeds. Test accuracy per round: set ``eval_every`` to the
round length (the digits config does).
"""

import jax
import jax.numpy as jnp
import ml_collections

from sslx.losses.self_training import (pool_targets, round_boundary_momentum, round_index,
                                       teacher_targets)
from sslx.methods.base import Context, Method, Target, View, register
from sslx.methods.checks import boolean, check, integer, number, one_of

OPTIONS = ml_collections.ConfigDict(dict(
    num_rounds=4,  # round 0 trains the first teacher on labels; rounds 1.. are students
    soft_targets=True,  # the official scripts' teacher_softmax_temp=1 (soft labels)
    temperature=1.0,  # teacher softmax temperature for soft targets
    threshold=0.0,  # teacher confidence below which a pseudo-label is dropped (paper: 0.3)
    unsup_weight=1.0,  # weight of the pseudo-label term against the labeled CE
    teacher_view="none",  # the teacher's input: 'none' (clean images, the paper) or 'weak'
))


def _teacher_view(options) -> str:
  return "unlabeled_clean" if options.teacher_view == "none" else "unlabeled_weak"


def views(options):
  # The teacher's input stays out of the student's shared pass (and its BatchNorm batch):
  # the student sees only noised images, as in Noisy Student.
  return {_teacher_view(options): View("unlabeled", options.teacher_view, shared_pass=False),
          "unlabeled_strong": View("unlabeled", "strong")}


def round_steps(options, num_steps: int) -> int:
  return max(num_steps // options.num_rounds, 1)


def init_state(options, info):
  del options
  u, k = info.pool_sizes["unlabeled"], info.num_classes
  return {"targets": jnp.zeros((u, k), jnp.float32),
          "labelled_round": jnp.full((u,), -1, jnp.int32),  # -1: never labelled
          "correct": jnp.zeros((u,), jnp.float32),  # the stored label's argmax is the truth
          "known": jnp.zeros((u,), jnp.float32),  # the truth is known (benchmarks)
          # Confirmation bias: the label it replaced (a trained teacher's, round >= 1) was
          # wrong, and the new one repeats that same wrong class.
          "was_wrong": jnp.zeros((u,), jnp.float32),
          "repeated": jnp.zeros((u,), jnp.float32)}


def self_training_loss(ctx: Context):
  opts, state = ctx.options, ctx.state
  r_steps = round_steps(opts, ctx.num_steps)
  r = round_index(ctx.step, round_steps=r_steps, num_rounds=opts.num_rounds)
  teacher = ctx.forward(ctx.images[_teacher_view(opts)], params="teacher", train=True,
                        rng="teacher", update_stats=False)["logits"]
  fresh_targets = teacher_targets(teacher, temperature=opts.temperature, soft=opts.soft_targets)
  idx = ctx.batch["unlabeled_indices"]
  targets, pool, labelled_round, fresh = pool_targets(
      state["targets"], state["labelled_round"], idx, fresh_targets, r)
  mask = (jnp.max(targets, -1) >= opts.threshold).astype(jnp.float32)
  log_p = jax.nn.log_softmax(ctx.outputs["unlabeled_strong"]["logits"], -1)
  unsup = jnp.mean(mask * -jnp.sum(targets * log_p, -1))
  active = (r >= 1).astype(jnp.float32)  # round 0: no trained teacher yet
  truth = ctx.batch.get("unlabeled_labels", jnp.full(idx.shape, -1, jnp.int32))
  known = truth >= 0
  label = jnp.argmax(targets, -1)
  correct = (label == truth) & known
  old_label = jnp.argmax(state["targets"][idx], -1)
  had_previous = fresh & known & (state["labelled_round"][idx] >= 1)
  was_wrong = had_previous & (old_label != truth)
  repeated = was_wrong & (label == old_label)

  def keep_unless_fresh(name, value):
    return state[name].at[idx].set(
        jnp.where(fresh, value.astype(jnp.float32), state[name][idx]))

  new_state = {"targets": pool, "labelled_round": labelled_round,
               "correct": state["correct"].at[idx].set(correct.astype(jnp.float32)),
               "known": state["known"].at[idx].set(known.astype(jnp.float32)),
               "was_wrong": keep_unless_fresh("was_wrong", was_wrong),
               "repeated": keep_unless_fresh("repeated", repeated)}
  this_round = (labelled_round == r).astype(jnp.float32)
  metrics = {"round": r, "unsup_loss": unsup, "active": active, "mask_rate": jnp.mean(mask),
             "fresh_rate": jnp.mean(fresh.astype(jnp.float32)),
             "pseudo_label_accuracy": jnp.sum(correct) / jnp.maximum(jnp.sum(known), 1),
             "pool_coverage": jnp.mean(this_round),
             "pool_pseudo_label_accuracy": (
                 jnp.sum(this_round * new_state["correct"])
                 / jnp.maximum(jnp.sum(this_round * new_state["known"]), 1)),
             # Of the pool examples the previous (trained) teacher got wrong, the share
             # this round's teacher gives the same wrong class (rounds >= 2).
             "pool_repeated_error_rate": (
                 jnp.sum(this_round * new_state["repeated"])
                 / jnp.maximum(jnp.sum(this_round * new_state["was_wrong"]), 1))}
  return active * opts.unsup_weight * unsup, metrics, new_state


def targets(options):
  return {"teacher": Target(momentum=lambda step, num_steps: round_boundary_momentum(
      step, round_steps=round_steps(options, num_steps), num_rounds=options.num_rounds))}


def option_errors(options) -> list[str]:
  return check("self_training", options, {
      "num_rounds": integer(1),
      "soft_targets": boolean(),
      "temperature": number(0, low_open=True),
      "threshold": number(0, 1),
      "unsup_weight": number(0),
      "teacher_view": one_of("none", "weak"),
  })


METHOD = register(Method(
    name="self_training", loss=self_training_loss, options=OPTIONS, option_errors=option_errors,
    views=views,
    targets=targets, init_state=init_state,
    needs_pool_indices=True))  # reads ctx.batch['unlabeled_indices']: no data.streaming
