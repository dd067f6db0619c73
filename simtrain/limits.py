"""Memory limits on a job spec: refuse a model or a batch that cannot fit before anything is allocated.

A spec asking for 96 layers of width 12288, or a batch of 4096 blocks of 8192 tokens, passes the schema,
and would take a trainer down (out of memory) rather than fail with a reason. These estimates are checked
when a job is submitted (422, naming the field) and again by the worker before it builds the model, against
``SIMTRAIN_MAX_MODEL_PARAMS`` and ``SIMTRAIN_MAX_ACTIVATION_BYTES``.
"""

from __future__ import annotations

from dataclasses import dataclass

from simtrain.jobs import JobSpec
from simtrain.settings import Settings


@dataclass(frozen=True)
class LimitError:
    """One limit a spec exceeds: the field to change, and why."""

    field: str
    message: str

    def text(self) -> str:
        return f"{self.field}: {self.message}"


def model_params(n_layer: int, n_embd: int, block_size: int) -> int:
    """Parameters of the transformer apart from the token embedding (its vocabulary is not known yet):
    per block 12 n_embd² weights (attention 4, MLP 8) plus biases and norms, and the position embedding."""
    per_layer = 12 * n_embd * n_embd + 13 * n_embd
    return n_layer * per_layer + block_size * n_embd + 2 * n_embd


def activation_bytes(n_layer: int, n_head: int, n_embd: int, batch_size: int, block_size: int) -> int:
    """Bytes of activations kept for the backward pass of one training step, in float32.

    Per layer ``s·b·h·(34 + 5·a·s/h)`` bytes at 16 bits (Korthikanti et al., 2022, no recomputation), doubled
    for float32. The attention term assumes scores are materialised, as the CPU path does.
    """
    s, b, h, a = block_size, batch_size, n_embd, n_head
    return 2 * n_layer * (s * b * h * 34 + 5 * a * s * s * b)


def limit_errors(spec: JobSpec, settings: Settings) -> list[LimitError]:
    """Every memory limit ``spec`` exceeds under ``settings`` (empty: it fits)."""
    n_layer, n_head, n_embd = spec.model.sizes()
    t = spec.training
    errors = []
    params = model_params(n_layer, n_embd, t.block_size)
    if params > settings.max_model_params:
        field = "model.model_type" if spec.model.model_type else "model.n_embd"
        errors.append(
            LimitError(
                field,
                f"the model has about {params:,} parameters, over this deployment's limit of "
                f"{settings.max_model_params:,} (SIMTRAIN_MAX_MODEL_PARAMS): choose a smaller model",
            )
        )
    act = activation_bytes(n_layer, n_head, n_embd, t.batch_size, t.block_size)
    if act > settings.max_activation_bytes:
        errors.append(
            LimitError(
                "training.block_size",
                f"a step of batch_size {t.batch_size} x block_size {t.block_size} needs about "
                f"{act / 2**30:,.1f} GiB of activations, over this deployment's limit of "
                f"{settings.max_activation_bytes / 2**30:,.1f} GiB (SIMTRAIN_MAX_ACTIVATION_BYTES): "
                "lower block_size or batch_size",
            )
        )
    return errors
