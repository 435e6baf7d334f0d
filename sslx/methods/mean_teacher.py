"""Mean Teacher (Tarvainen & Valpola, NeurIPS 2017): a student matches its EMA teacher.

The teacher is an exponential moving average of the student's weights (a *target tree*
of this method, ``state.method_params['mean_teacher']['teacher']``, decay
``teacher_decay``). Each step the teacher sees one weak view of the unlabeled images
(no gradient), the student another weak view, and the loss is the mean squared
difference of their class probabilities (:func:`sslx.losses.softmax_mse`), ramped up
linearly over the first ``warmup`` fraction of training. With ``loss.terms =
{'supervised': 1.0, 'mean_teacher': lambda_u}`` this is USB's ``meanteacher``:

    loss = CE(labeled) + lambda_u * min(step / (warmup * num_steps), 1) * MSE(student, teacher)

Differences from USB's code (semilearn/algorithms/meanteacher): USB's snapshot takes the
student logits from the teacher's output (``logits_x_ulb_s = outs_x_ulb_w['logits']``),
which leaves the unlabeled loss without gradient; sslx follows the paper and uses the
student's own pass. USB freezes the BatchNorm running statistics during the unlabeled
passes; here the student's unlabeled view shares the one online pass (and its running
statistics) with the labeled images, as all sslx methods do. Both use two *weak* views.
Diagnostics: the consistency error, the teacher's confidence and its pseudo-label
accuracy where the unlabeled labels are known.
"""

import jax
import jax.numpy as jnp
import ml_collections

from sslx.losses.consistency import softmax_mse
from sslx.methods.base import Context, Method, Target, View, register
from sslx.methods.checks import check, number

OPTIONS = ml_collections.ConfigDict(dict(
    teacher_decay=0.999,  # EMA decay of the teacher (USB ema_m)
    warmup=0.4,  # fraction of training over which the weight ramps from 0 to 1 (USB unsup_warm_up)
))


def ramp(step, num_steps: int, warmup: float):
  """``clip(step / (warmup * num_steps), 0, 1)``; 1 from the start when warmup is 0."""
  if warmup <= 0:
    return jnp.ones((), jnp.float32)
  return jnp.clip(step / (warmup * num_steps), 0.0, 1.0)


def mean_teacher_loss(ctx: Context):
  teacher = ctx.forward(ctx.images["unlabeled_weak"], params="teacher", train=True)
  probs = jax.nn.softmax(teacher["logits"], -1)
  student = ctx.outputs["unlabeled_weak_2"]["logits"]
  consistency = softmax_mse(student, probs)
  weight = ramp(ctx.step, ctx.num_steps, ctx.options.warmup)
  metrics = {"consistency": consistency, "ramp": weight,
             "teacher_confidence": jnp.mean(jnp.max(probs, -1))}
  truth = ctx.batch.get("unlabeled_labels")
  if truth is not None:
    known = truth >= 0
    correct = (jnp.argmax(probs, -1) == truth) & known
    metrics["teacher_accuracy"] = jnp.sum(correct) / jnp.maximum(jnp.sum(known), 1)
  return weight * consistency, metrics


def option_errors(options) -> list[str]:
  return check("mean_teacher", options, {
      "teacher_decay": number(0, 1, high_open=True),
      "warmup": number(0, 1),
  })


METHOD = register(Method(
    name="mean_teacher", loss=mean_teacher_loss, options=OPTIONS, option_errors=option_errors,
    views={"unlabeled_weak": View("unlabeled", "weak"),
           "unlabeled_weak_2": View("unlabeled", "weak")},
    targets=lambda options: {"teacher": Target(momentum=lambda step, n: options.teacher_decay)}))
