"""The recipe checks (does training behave as a healthy run does?) and the function-trace check."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from simtrain.jobs import ChecksSpec
from trainer_service.report.checks import Check, Verdict, grade

SECTION = "recipe"
PER_STEP = ("batch_fetch", "lr_schedule", "forward", "loss", "backward", "grad_clip", "optimizer_step")


@dataclass(frozen=True)
class RunFacts:
    """What the run measured, as the recipe checks read it (None: not measured)."""

    vocab_size: int
    pairs: bool
    init_val_loss: float | None
    init_train_loss: float | None
    final_train_loss: float | None
    final_val_loss: float | None
    train_unigram_nats: float | None  # the unigram baseline: entropy of the trained targets
    recent_fall: float | None  # relative fall of the train loss over the last evaluation interval
    nonfinite_steps: int
    first_nonfinite_step: int | None
    data_wait_share: float | None
    preflight: dict[str, Any] | None
    accuracy: dict[str, Any] | None
    init_from: str | None = None  # the job whose checkpoint weights this run started from, if any
    retrieval: bool = False  # prompts begin with retrieved passages, which are meant to hold the answer


def _finite(*values: float | None) -> bool:
    return all(v is not None and math.isfinite(v) for v in values)


def loss_at_init(f: RunFacts, spec: ChecksSpec) -> Check:
    title, setting = "loss at init ≈ ln(vocab)", "checks.init_loss_warn, checks.init_loss_fail"
    threshold = f"warn > {spec.init_loss_warn}, fail > {spec.init_loss_fail} (relative)"
    expected = math.log(f.vocab_size) if f.vocab_size > 1 else 0.0
    if f.init_from is not None:
        why = f"the weights came from job {f.init_from}'s checkpoint, not from an initialisation"
        return Check("loss_at_init", SECTION, title, Verdict.skip, why, None, threshold, setting)
    if f.init_val_loss is None or expected == 0.0:
        why = "no evaluation at step 0" if f.init_val_loss is None else "a vocabulary of one token"
        return Check("loss_at_init", SECTION, title, Verdict.skip, why, None, threshold, setting)
    if not math.isfinite(f.init_val_loss):
        reason = f"the val loss at init is {f.init_val_loss}: no target takes loss, or the model is broken"
        return Check("loss_at_init", SECTION, title, Verdict.fail, reason, None, threshold, setting)
    off = abs(f.init_val_loss - expected) / expected
    verdict = grade(off, spec.init_loss_warn, spec.init_loss_fail)
    reason = (
        f"val loss at init {f.init_val_loss:.3f} against ln({f.vocab_size}) = {expected:.3f} ({off:.1%} off)"
    )
    if verdict is not Verdict.passed:
        reason += (
            ": an untrained model should be uniform over the vocabulary; check that the vocab size is the "
            "tokenizer's and that the initialisation is minGPT's"
        )
    return Check("loss_at_init", SECTION, title, verdict, reason, off, threshold, setting)


def one_batch_overfits(f: RunFacts, spec: ChecksSpec) -> Check:
    title = "one batch overfits"
    setting = "checks.overfit_steps, checks.overfit_rows, checks.overfit_lr, checks.overfit_ratio"
    threshold = f"pass < {spec.overfit_ratio} x start within {spec.overfit_steps} steps"
    p = f.preflight
    if p is None:
        why = (
            "turned off (checks.overfit_steps = 0)"
            if spec.overfit_steps == 0
            else "the pre-flight did not run"
        )
        return Check("one_batch_overfit", SECTION, title, Verdict.skip, why, None, threshold, setting)
    start, end = p["initial_loss"], p["final_loss"]
    if not _finite(start, end):
        reason = f"the pre-flight loss went from {start} to {end}: no target takes loss, or training diverges"
        return Check("one_batch_overfit", SECTION, title, Verdict.fail, reason, None, threshold, setting)
    if start <= 0:
        reason = f"no target of the {p['rows']} pre-flight rows takes loss: every target is masked with -1"
        return Check("one_batch_overfit", SECTION, title, Verdict.fail, reason, None, threshold, setting)
    ratio = end / start
    if ratio < p["ratio"]:
        reason = f"{p['rows']} rows went from loss {start:.3f} to {end:.3f} in {p['steps']} steps"
        return Check("one_batch_overfit", SECTION, title, Verdict.passed, reason, ratio, threshold, setting)
    reason = (
        f"{p['rows']} rows went from loss {start:.3f} only to {end:.3f} in {p['steps']} steps: the model "
        "cannot even memorise one batch; check that targets line up with inputs and take loss"
    )
    return Check("one_batch_overfit", SECTION, title, Verdict.fail, reason, ratio, threshold, setting)


def loss_falls(f: RunFacts, spec: ChecksSpec) -> Check:
    title, threshold = "loss falls", f"fail <= 0, warn < {spec.loss_fall_warn} (relative fall)"
    start, end = f.init_train_loss, f.final_train_loss
    if start is None or end is None:
        return Check(
            "loss_falls", SECTION, title, Verdict.skip, "no train evaluation at both ends of the run"
        )
    if not _finite(start, end) or start <= 0:
        reason = f"train loss went from {start} to {end}: it is not finite, so it cannot fall"
        return Check(
            "loss_falls", SECTION, title, Verdict.fail, reason, None, threshold, "checks.loss_fall_warn"
        )
    drop = (start - end) / start
    change = f"fell by {drop:.1%}" if drop > 0 else f"rose by {-drop:.1%}"
    reason = f"train loss went from {start:.3f} to {end:.3f} ({change})"
    if drop <= 0:
        verdict, reason = Verdict.fail, reason + ": nothing was learned; check the data and the learning rate"
    elif drop < spec.loss_fall_warn:
        verdict, reason = (
            Verdict.warn,
            reason + ": train longer, raise the learning rate, or look at the data",
        )
    else:
        verdict = Verdict.passed
    return Check("loss_falls", SECTION, title, verdict, reason, drop, threshold, "checks.loss_fall_warn")


def baselines(f: RunFacts) -> dict[str, float] | None:
    """How far the final val loss got below ln(vocab), the loss of a uniform guess, and below the unigram
    entropy of the train targets, the loss of guessing by frequency: in nats and as a share of each."""
    val, unigram = f.final_val_loss, f.train_unigram_nats
    if val is None or not math.isfinite(val) or unigram is None:
        return None
    uniform = math.log(f.vocab_size)
    return {
        "val_loss": val,
        "unigram_nats": unigram,
        "uniform_nats": uniform,
        "below_unigram_nats": unigram - val,
        "below_unigram_share": (unigram - val) / unigram if unigram > 0 else 0.0,
        "below_uniform_nats": uniform - val,
        "below_uniform_share": (uniform - val) / uniform,
    }


def _below(nats: float, share: float) -> str:
    where = "below" if nats >= 0 else "above"
    return f"{abs(nats):.3f} nats ({abs(share):.1%}) {where}"


def baseline(f: RunFacts, spec: ChecksSpec) -> Check:
    """Does the model beat what counting tokens gives? Fails when the gain below unigram is too small."""
    title = "beats simple baselines"
    threshold = f"warn < {spec.baseline_warn}, fail < {spec.baseline_fail} (relative gain below unigram)"
    setting = "checks.baseline_warn, checks.baseline_fail"
    b = baselines(f)
    if b is None:
        why = (
            "no finite final val loss"
            if f.train_unigram_nats is not None
            else "no trained target was counted"
        )
        return Check("baseline", SECTION, title, Verdict.skip, why, None, threshold, setting)
    if b["unigram_nats"] <= 0:
        why = "every train target is one token: nothing to predict (see target diversity)"
        return Check("baseline", SECTION, title, Verdict.skip, why, None, threshold, setting)
    gain = b["below_unigram_share"]
    unigram = _below(b["below_unigram_nats"], gain)
    uniform = _below(b["below_uniform_nats"], b["below_uniform_share"])
    reason = (
        f"val loss {b['val_loss']:.3f} is {unigram} the unigram entropy of the train targets "
        f"({b['unigram_nats']:.3f}) and {uniform} ln({f.vocab_size}) = {b['uniform_nats']:.3f}"
    )
    verdict = grade(gain, spec.baseline_warn, spec.baseline_fail, higher_is_worse=False)
    still_falling = f.recent_fall is not None and f.recent_fall >= spec.baseline_fail
    if verdict is not Verdict.passed and still_falling:
        verdict = Verdict.warn  # too early to call the data unlearnable
        reason += f": the loss still fell {f.recent_fall:.1%} over the last evaluation interval; train longer"
    elif verdict is not Verdict.passed:
        reason += (
            ": the model learned little beyond how often each token occurs; the data may be noise (random "
            "or shuffled text, a wrong encoding), or the answers do not follow from the prompts"
        )
    return Check("baseline", SECTION, title, verdict, reason, gain, threshold, setting)


def finite(f: RunFacts) -> Check:
    title = "loss and gradients finite"
    if f.nonfinite_steps:
        reason = (
            f"loss or gradient norm was NaN/inf at {f.nonfinite_steps} step(s), first at step "
            f"{f.first_nonfinite_step}: lower the learning rate, or set grad_norm_clip"
        )
        return Check("finite", SECTION, title, Verdict.fail, reason, f.nonfinite_steps, "fail > 0")
    final = [v for v in (f.final_train_loss, f.final_val_loss) if v is not None]
    if not final and f.init_val_loss is None:
        return Check("finite", SECTION, title, Verdict.skip, "nothing was trained or evaluated")
    if not _finite(*final):
        reason = f"the final evaluation gave train {f.final_train_loss}, val {f.final_val_loss}"
        return Check("finite", SECTION, title, Verdict.fail, reason, None, "fail > 0")
    return Check(
        "finite", SECTION, title, Verdict.passed, "every step's loss and gradient norm was finite", 0
    )


def val_train_gap(f: RunFacts, spec: ChecksSpec) -> Check:
    title, threshold = "val/train gap", f"warn > {spec.gap_warn} nats"
    if not _finite(f.final_train_loss, f.final_val_loss):
        return Check(
            "val_train_gap", SECTION, title, Verdict.skip, "no finite final evaluation", None, threshold
        )
    gap = f.final_val_loss - f.final_train_loss  # type: ignore[operator]
    verdict = grade(gap, spec.gap_warn, None)
    reason = f"val loss {f.final_val_loss:.3f} against train {f.final_train_loss:.3f} (gap {gap:+.3f})"
    if verdict is Verdict.warn:
        reason += ": the model memorises train rather than generalising; add data, dropout or fewer steps"
    return Check("val_train_gap", SECTION, title, verdict, reason, gap, threshold, "checks.gap_warn")


def data_wait(f: RunFacts, spec: ChecksSpec) -> Check:
    title, threshold = "data wait", f"warn > {spec.data_wait_warn}, fail > {spec.data_wait_fail}"
    setting = "checks.data_wait_warn, checks.data_wait_fail"
    share = f.data_wait_share
    if share is None:
        return Check("data_wait", SECTION, title, Verdict.skip, "no training step was timed", None, threshold)
    verdict = grade(share, spec.data_wait_warn, spec.data_wait_fail)
    reason = f"{share:.1%} of training time was spent waiting for batches"
    if verdict is not Verdict.passed:
        reason += ": the data service is the bottleneck; move it closer, or give it more CPU"
    return Check("data_wait", SECTION, title, verdict, reason, share, threshold, setting)


def targets_aligned(batches: dict[str, Any], spec: ChecksSpec) -> Check:
    title, threshold = "targets aligned", f"fail < {spec.aligned_min}"
    share, same = batches["aligned_share"], batches["same_position_share"]
    if share is None:
        return Check("targets_aligned", SECTION, title, Verdict.skip, "no target to compare", None, threshold)
    if share >= spec.aligned_min:
        reason = f"{share:.1%} of targets are the next input token (y[t] = x[t+1]), the rest masked"
        return Check(
            "targets_aligned", SECTION, title, Verdict.passed, reason, share, threshold, "checks.aligned_min"
        )
    if same is not None and same > 0.5:
        reason = (
            f"y equals x at the same position for {same:.1%} of targets: targets are not shifted, so each "
            "answer is fed in as its own input (a label leak); y must be x shifted left by one"
        )
    else:
        reason = f"only {share:.1%} of targets are the next input token: y is not x shifted by one; "
        reason += "fix the packing"
    return Check(
        "targets_aligned", SECTION, title, Verdict.fail, reason, share, threshold, "checks.aligned_min"
    )


def target_leakage(batches: dict[str, Any], spec: ChecksSpec, pairs: bool, retrieval: bool = False) -> Check:
    title = "no target leakage"
    threshold, setting = (
        f"warn > {spec.leakage_warn}, fail > {spec.leakage_fail}",
        "checks.leakage_warn, checks.leakage_fail",
    )
    if not pairs:
        return Check(
            "target_leakage", SECTION, title, Verdict.skip, "pairs packing only", None, threshold, setting
        )
    if retrieval:
        why = (
            "each prompt begins with retrieved passages, which should hold the answer: the retrieval "
            "checks judge them (retrieval_support, and retrieval_leak for val)"
        )
        return Check("target_leakage", SECTION, title, Verdict.skip, why, None, threshold, setting)
    share = batches["leaked_share"]
    if share is None:
        why = "no answer of two or more tokens to look for"
        return Check("target_leakage", SECTION, title, Verdict.skip, why, None, threshold, setting)
    verdict = grade(share, spec.leakage_warn, spec.leakage_fail)
    reason = f"{share:.1%} of answers appear word for word inside their prompt"
    if verdict is not Verdict.passed:
        reason += ": the model can copy instead of learn; take the answer out of the question field"
    return Check("target_leakage", SECTION, title, verdict, reason, share, threshold, setting)


def accuracy(f: RunFacts, spec: ChecksSpec) -> Check:
    title = "held-out accuracy"
    threshold = f"warn < {spec.accuracy_warn}" + (
        f", fail < {spec.accuracy_fail}" if spec.accuracy_fail else ""
    )
    setting = "checks.accuracy_warn, checks.accuracy_fail, checks.accuracy_examples"
    if not f.pairs:
        return Check("accuracy", SECTION, title, Verdict.skip, "pairs packing only", None, threshold, setting)
    a = f.accuracy
    if not a or not a.get("examples"):
        why = (a or {}).get("skipped") or "no held-out pair could be judged"
        return Check("accuracy", SECTION, title, Verdict.skip, why, None, threshold, setting)
    share = a["accuracy"]
    verdict = grade(share, spec.accuracy_warn, spec.accuracy_fail or None, higher_is_worse=False)
    reason = f"greedy answers exactly match {a['correct']} of {a['examples']} held-out pairs ({share:.1%})"
    if verdict is not Verdict.passed:
        reason += (
            ": the answers do not follow from the prompts the model saw (facts, or shuffled labels), or it "
            "needs more steps; compare with the samples"
        )
    return Check("accuracy", SECTION, title, verdict, reason, share, threshold, setting)


def expected_calls(steps: int, max_iters: int, eval_interval: int, evaluated_at_init: bool) -> dict[str, str]:
    """What a run of ``steps`` optimizer steps must have called: ``"== n"`` or ``">= n"`` per function."""
    evals = int(evaluated_at_init) + sum(
        1 for s in range(1, steps + 1) if s % eval_interval == 0 or s == max_iters
    )
    expected = {name: f"== {steps}" for name in PER_STEP}
    expected.update({"encode": ">= 1", "eval": f"== {evals}", "generate": ">= 1"})
    expected["checkpoint"] = ">= 1" if evals > int(evaluated_at_init) else ">= 0"
    return expected


def trace_check(trace: dict[str, dict[str, Any]], expected: dict[str, str]) -> Check:
    wrong = []
    for name, rule in expected.items():
        op, n = rule.split()
        calls = trace.get(name, {}).get("calls", 0)
        if (op == "==" and calls != int(n)) or (op == ">=" and calls < int(n)):
            wrong.append(f"{name} ran {calls} times, expected {rule.replace('==', '').strip()}")
    title = "function trace"
    if wrong:
        reason = "; ".join(wrong) + ": the training loop skipped or repeated work"
        return Check("trace", "trace", title, Verdict.fail, reason, len(wrong), "every count as expected")
    steps = trace.get("optimizer_step", {}).get("calls", 0)
    evals = trace["eval"]["calls"]
    reason = f"every function ran as often as expected: {steps} optimizer steps, {evals} evaluations"
    return Check("trace", "trace", title, Verdict.passed, reason, 0, "every count as expected")


def recipe_checks(f: RunFacts, batches: dict[str, Any], spec: ChecksSpec) -> list[Check]:
    return [
        targets_aligned(batches, spec),
        target_leakage(batches, spec, f.pairs, f.retrieval),
        loss_at_init(f, spec),
        one_batch_overfits(f, spec),
        finite(f),
        loss_falls(f, spec),
        baseline(f, spec),
        val_train_gap(f, spec),
        data_wait(f, spec),
        accuracy(f, spec),
    ]
