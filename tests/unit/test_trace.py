"""The function trace: counts and times per training function, kept across a resume, free of side effects."""

from __future__ import annotations

import copy
import time

import torch
from torch import nn

from trainer_service.model import GPT, GPTConfig
from trainer_service.report.trace import FUNCTIONS, Trace
from trainer_service.trainer import Trainer, TrainerConfig

PER_STEP = ("batch_fetch", "lr_schedule", "forward", "loss", "backward", "grad_clip", "optimizer_step")


def tiny(vocab: int = 11, block: int = 8) -> GPT:
    torch.manual_seed(0)
    return GPT(GPTConfig(n_layer=1, n_head=1, n_embd=8, vocab_size=vocab, block_size=block))


def batches(n: int, vocab: int = 11, block: int = 8) -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(1)
    tokens = [torch.randint(0, vocab, (2, block + 1), generator=g) for _ in range(n)]
    return [(t[:, :-1], t[:, 1:]) for t in tokens]


def test_spans_count_calls_and_sum_time() -> None:
    trace = Trace()
    for _ in range(3):
        with trace.span("eval"):
            time.sleep(0.002)
    trace.add_seconds("encode", 0.5)
    summary = trace.summary()
    assert list(summary)[: len(FUNCTIONS)] == list(FUNCTIONS)  # every expected function is listed
    assert summary["eval"]["calls"] == 3 and summary["eval"]["total_s"] >= 0.006
    assert summary["eval"]["mean_s"] == summary["eval"]["total_s"] / 3
    assert summary["encode"] == {"calls": 1, "total_s": 0.5, "mean_s": 0.5}
    assert summary["optimizer_step"] == {"calls": 0, "total_s": 0.0, "mean_s": 0.0}


def test_a_span_counts_even_when_its_work_fails() -> None:
    trace = Trace()
    try:
        with trace.span("checkpoint"):
            raise OSError("disk full")
    except OSError:
        pass
    assert trace.summary()["checkpoint"]["calls"] == 1


def test_state_round_trip_keeps_this_attempts_preparation() -> None:
    saved = Trace()
    saved.add_seconds("optimizer_step", 1.0, calls=10)
    saved.add_seconds("encode", 0.2)
    resumed = Trace()
    resumed.add_seconds("encode", 0.3)  # this attempt prepared the dataset before reading the checkpoint
    resumed.load_state_dict(saved.state_dict(), keep=("encode",))
    summary = resumed.summary()
    assert summary["optimizer_step"]["calls"] == 10
    assert summary["encode"]["calls"] == 2 and abs(summary["encode"]["total_s"] - 0.5) < 1e-12


def test_the_trainer_traces_every_step_function_once_per_step() -> None:
    trainer = Trainer(TrainerConfig(device="cpu", max_iters=5), tiny(), iter(batches(5)))
    trainer.run()
    summary = trainer.trace.summary()
    for name in PER_STEP:
        assert summary[name]["calls"] == 5, name
    # The lm_head hook splits the model's one call into a forward and a loss with times of their own.
    assert summary["forward"]["total_s"] > 0 and summary["loss"]["total_s"] > 0
    assert summary["eval"]["calls"] == 0  # the job runner evaluates, not the bare loop
    assert trainer.grad_norm is not None and torch.isfinite(trainer.grad_norm)


def test_tracing_changes_nothing_the_model_computes() -> None:
    data = batches(4)
    traced = Trainer(TrainerConfig(device="cpu", max_iters=4), tiny(), iter(data))
    traced.run()
    model = tiny()  # the same loop by hand, no trace, no hook
    optimizer = model.configure_optimizers(TrainerConfig())
    for x, y in data:
        _, loss = model(x, y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
    for name, value in model.state_dict().items():
        assert torch.equal(value, traced.model.state_dict()[name]), name


class NoHead(nn.Module):
    """A model without ``lm_head``: the trace cannot see where its loss starts."""

    def __init__(self) -> None:
        super().__init__()
        self.inner = tiny()

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.inner(x, y)

    def configure_optimizers(self, config: TrainerConfig) -> torch.optim.Optimizer:
        return self.inner.configure_optimizers(config)


def test_without_a_boundary_the_loss_is_counted_inside_forward() -> None:
    trainer = Trainer(TrainerConfig(device="cpu", max_iters=3), NoHead(), iter(batches(3)))  # type: ignore[arg-type]
    trainer.run()
    summary = trainer.trace.summary()
    assert summary["forward"]["calls"] == summary["loss"]["calls"] == 3
    assert summary["loss"]["total_s"] == 0.0


def test_a_traced_model_can_still_be_copied() -> None:
    trainer = Trainer(TrainerConfig(device="cpu", max_iters=1), tiny(), iter(batches(1)))
    trainer.run()
    twin = copy.deepcopy(trainer.model)  # the hook holds the trace, not the trainer and its data stream
    assert torch.equal(twin.lm_head.weight, trainer.model.lm_head.weight)
