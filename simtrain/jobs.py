"""The job spec and job record: the JSON contract shared by gateway, trainer and any other client."""

from __future__ import annotations

import json
import math
import time
import types
from enum import StrEnum
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationInfo,
    field_validator,
    model_validator,
)

from simtrain.model_presets import MODEL_PRESETS

ModelType = Literal[tuple(MODEL_PRESETS)]  # type: ignore[valid-type]


def _finite(value: Any) -> Any:
    """Refuse NaN and Infinity: Python's JSON reads them, but a record holding one cannot be read back."""
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"not a finite number: {json.dumps(value)}")
    return value


OptionValue = Annotated[str | int | float | bool, BeforeValidator(_finite)]

MAX_TAGS = 16
MAX_TAG_LENGTH = 64


def check_tag(tag: str) -> str:
    """A tag is one short word: no whitespace (a tag list reads as words) and no comma (the CLI and the web
    form take a list as ``a,b``)."""
    if not tag or len(tag) > MAX_TAG_LENGTH or any(c.isspace() or c == "," for c in tag):
        raise ValueError(f"a tag is 1 to {MAX_TAG_LENGTH} characters without spaces or commas: {tag!r}")
    if not tag.isprintable():
        raise ValueError(f"a tag has no control characters: {tag!r}")
    return tag


Tag = Annotated[str, AfterValidator(check_tag)]
# A job id (uuid4 hex); the gateway's path ids take the same shape.
JobId = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{1,64}$")]


def _numeric(annotation: Any) -> bool:
    """Whether a field takes numbers and not booleans (``int``, ``float | None``, ``tuple[float, float]``)."""
    if get_origin(annotation) in (Union, types.UnionType, tuple):
        args = [a for a in get_args(annotation) if a is not type(None)]
        return bool(args) and bool not in args and all(_numeric(a) for a in args)
    return annotation in (int, float)


class _Strict(BaseModel):
    # Unknown fields are errors: a typo in a spec must not silently train the default.
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    @field_validator("*", mode="before")
    @classmethod
    def _plain_numbers(cls, value: Any, info: ValidationInfo) -> Any:
        """Only finite numbers where numbers are asked: Pydantic would take ``true`` as 1."""
        assert info.field_name is not None
        items = value if isinstance(value, list | tuple) else [value]
        for item in items:
            _finite(item)
        if _numeric(cls.model_fields[info.field_name].annotation) and any(isinstance(v, bool) for v in items):
            raise ValueError("a number is asked here, not true or false")
        return value


class DatasetSpec(_Strict):
    """Either a prepared dataset ``id``, or ``module`` + ``source`` (+ tokenizer options) to prepare."""

    id: str | None = Field(default=None, min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.-]+$")
    module: str | None = Field(default=None, min_length=1, max_length=64)
    source: str | None = Field(default=None, min_length=1, max_length=1024)
    tokenizer: str = Field(default="char", min_length=1, max_length=64)
    packing: str = Field(default="stream", min_length=1, max_length=64)
    options: dict[str, OptionValue] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _id_or_source(self) -> DatasetSpec:
        if self.id is None and (self.module is None or self.source is None):
            raise ValueError("give either 'id', or both 'module' and 'source'")
        if self.id is not None and (self.module is not None or self.source is not None):
            raise ValueError("give either 'id' or 'module'/'source', not both")
        return self


class ModelSpec(_Strict):
    """A minGPT ``model_type`` preset, or ``n_layer``/``n_head``/``n_embd`` given explicitly."""

    model_type: ModelType | None = None  # type: ignore[valid-type]
    n_layer: int | None = Field(default=None, ge=1, le=96)
    n_head: int | None = Field(default=None, ge=1, le=128)
    n_embd: int | None = Field(default=None, ge=1, le=12288)
    embd_pdrop: float = Field(default=0.1, ge=0.0, lt=1.0)
    resid_pdrop: float = Field(default=0.1, ge=0.0, lt=1.0)
    attn_pdrop: float = Field(default=0.1, ge=0.0, lt=1.0)

    @model_validator(mode="after")
    def _preset_xor_sizes(self) -> ModelSpec:
        sizes = (self.n_layer, self.n_head, self.n_embd)
        if self.model_type is not None:
            if any(s is not None for s in sizes):
                raise ValueError("give either 'model_type' or n_layer/n_head/n_embd, not both")
        elif any(s is None for s in sizes):
            raise ValueError("give 'model_type', or all of n_layer, n_head and n_embd")
        elif self.n_embd % self.n_head:  # type: ignore[operator]
            raise ValueError("n_embd must be divisible by n_head")
        return self

    def sizes(self) -> tuple[int, int, int]:
        """(n_layer, n_head, n_embd), resolving the preset."""
        if self.model_type is not None:
            return MODEL_PRESETS[self.model_type]
        return self.n_layer, self.n_head, self.n_embd  # type: ignore[return-value]


class TrainingSpec(_Strict):
    """minGPT Trainer settings, plus evaluation and logging cadence."""

    max_iters: int = Field(default=300, ge=1, le=10_000_000)
    batch_size: int = Field(default=32, ge=1, le=4096)
    block_size: int = Field(default=64, ge=2, le=8192)
    learning_rate: float = Field(default=5e-4, gt=0.0, le=1.0)
    betas: tuple[float, float] = (0.9, 0.95)
    weight_decay: float = Field(default=0.1, ge=0.0, le=1.0)
    grad_norm_clip: float = Field(default=1.0, ge=0.0)
    lr_schedule: Literal["constant", "cosine"] = "constant"
    warmup_iters: int = Field(default=0, ge=0)
    seed: int = Field(default=0, ge=0, le=2**63 - 1)
    eval_interval: int = Field(default=100, ge=1)
    eval_iters: int = Field(default=10, ge=1, le=10_000)
    log_interval: int = Field(default=10, ge=1)
    device: Literal["auto", "cpu", "cuda"] = "auto"
    # auto: bf16 autocast on CUDA where supported, float32 on CPU; bf16 on CPU pays on CPUs with bf16 math.
    precision: Literal["auto", "fp32", "bf16"] = "auto"
    # Parallelism (torchrun + DDP): GPUs per node (0: none needed), nodes, and CPU processes per node (DDP
    # over gloo) when gpus is 0. batch_size is per process. compile: torch.compile the model (CUDA).
    gpus: int = Field(default=0, ge=0, le=64)
    nodes: int = Field(default=1, ge=1, le=1024)
    nproc: int = Field(default=1, ge=1, le=64)
    compile: bool = False

    @model_validator(mode="after")
    def _one_kind_of_process(self) -> TrainingSpec:
        if self.gpus and self.nproc > 1:
            raise ValueError("give 'gpus' (one process per GPU) or 'nproc' (CPU processes), not both")
        if self.gpus and self.device == "cpu":
            raise ValueError("'gpus' needs device 'cuda' or 'auto'")
        if self.nproc > 1 and self.device == "cuda":
            raise ValueError("'nproc' runs CPU processes; for GPUs give 'gpus'")
        return self


class ChecksSpec(_Strict):
    """Thresholds of the fit report's checks. Every one has a default, so ``{}`` is a valid ``checks``.

    Shares are fractions in [0, 1]; a check warns (or fails) when its measure crosses the threshold. Each
    report check names the field that sets its threshold, and the README explains them all.
    """

    # The data, from the data service's statistics and from every batch the trainer receives.
    empty_warn: float = Field(default=0.01, ge=0.0, le=1.0, description="share of empty examples")
    empty_fail: float = Field(default=0.2, ge=0.0, le=1.0)
    duplicates_warn: float = Field(default=0.5, ge=0.0, le=1.0, description="share of exact duplicates")
    masked_fail: float = Field(default=0.99, ge=0.0, le=1.0, description="share of targets masked (-1)")
    padding_warn: float = Field(default=0.75, ge=0.0, le=1.0, description="share of targets that pad")
    truncated_warn: float = Field(default=0.05, ge=0.0, le=1.0, description="pairs: share cut at the block")
    truncated_fail: float = Field(default=0.5, ge=0.0, le=1.0)
    pad_targets_warn: float = Field(
        default=0.01, ge=0.0, le=1.0, description="pairs: rows trained on padding"
    )
    pad_targets_fail: float = Field(default=0.1, ge=0.0, le=1.0)
    answer_top_warn: float = Field(
        default=0.6, ge=0.0, le=1.0, description="pairs: share of the commonest answer"
    )
    answer_top_fail: float = Field(default=0.9, ge=0.0, le=1.0)
    vocab_tokens_warn: float = Field(default=20.0, ge=0.0, description="train tokens per vocabulary entry")
    top_token_warn: float = Field(default=0.6, ge=0.0, le=1.0, description="share of the commonest target")
    top_token_fail: float = Field(default=0.95, ge=0.0, le=1.0)
    overlap_warn: float = Field(default=0.75, ge=0.0, description="val n-grams seen in train, relative")
    overlap_fail: float = Field(default=0.9, ge=0.0)
    overlap_ngram: int = Field(default=32, ge=2, le=1024, description="tokens per n-gram (stream packing)")
    # Chats: datasets in the chat template.
    reply_trained_fail: float = Field(
        default=0.9, ge=0.0, le=1.0, description="chats: fail below this share of reply targets trained"
    )
    reply_end_fail: float = Field(
        default=0.9, ge=0.0, le=1.0, description="chats: fail below this share of replies' <|end|> trained"
    )
    prompt_trained_warn: float = Field(
        default=0.01, ge=0.0, le=1.0, description="chats: share of system/user targets trained"
    )
    prompt_trained_fail: float = Field(default=0.5, ge=0.0, le=1.0)
    role_order_warn: float = Field(
        default=0.01, ge=0.0, le=1.0, description="chats: share of conversations out of role order"
    )
    role_order_fail: float = Field(default=0.5, ge=0.0, le=1.0)
    # Retrieval-augmented pairs.
    retrieval_support_warn: float = Field(
        default=0.5, ge=0.0, le=1.0, description="retrieval: warn below this share of answers in context"
    )
    retrieval_support_fail: float = Field(default=0.05, ge=0.0, le=1.0)
    context_cut_warn: float = Field(
        default=0.25, ge=0.0, le=1.0, description="retrieval: share of retrieved context cut off"
    )
    context_cut_fail: float = Field(default=0.9, ge=0.0, le=1.0)
    retrieval_leak_fail: float = Field(
        default=0.0, ge=0.0, le=1.0, description="retrieval: share of val answers given away by val passages"
    )
    # The recipe.
    aligned_min: float = Field(default=0.99, ge=0.0, le=1.0, description="share of y equal to x shifted")
    leakage_warn: float = Field(default=0.2, ge=0.0, le=1.0, description="pairs: answer inside the prompt")
    leakage_fail: float = Field(default=0.5, ge=0.0, le=1.0)
    init_loss_warn: float = Field(default=0.1, ge=0.0, description="|loss at init - ln V| / ln V")
    init_loss_fail: float = Field(default=0.25, ge=0.0)
    overfit_steps: int = Field(default=50, ge=0, le=10_000, description="pre-flight steps; 0 skips it")
    overfit_rows: int = Field(default=8, ge=1, le=4096, description="rows of the first batch to overfit")
    overfit_lr: float = Field(default=3e-3, gt=0.0, le=1.0)
    overfit_ratio: float = Field(default=0.5, gt=0.0, le=1.0, description="pass below this share of start")
    loss_fall_warn: float = Field(default=0.1, ge=0.0, le=1.0, description="least relative fall of loss")
    baseline_warn: float = Field(
        default=0.1, ge=0.0, le=1.0, description="least gain below unigram, relative"
    )
    baseline_fail: float = Field(default=0.02, ge=0.0, le=1.0)
    gap_warn: float = Field(default=0.5, ge=0.0, description="val loss minus train loss, in nats")
    data_wait_warn: float = Field(default=0.1, ge=0.0, le=1.0, description="share of step time")
    data_wait_fail: float = Field(default=0.5, ge=0.0, le=1.0)
    accuracy_examples: int = Field(default=100, ge=0, le=10_000, description="held-out pairs; 0 skips")
    accuracy_warn: float = Field(default=0.05, ge=0.0, le=1.0, description="warn below this exact match")
    accuracy_fail: float = Field(default=0.0, ge=0.0, le=1.0, description="fail below (0: never)")

    @model_validator(mode="after")
    def _warn_before_fail(self) -> ChecksSpec:
        pairs = [("empty", "above"), ("top_token", "above"), ("overlap", "above"), ("leakage", "above")]
        pairs += [("truncated", "above"), ("pad_targets", "above"), ("answer_top", "above")]
        pairs += [("prompt_trained", "above"), ("role_order", "above"), ("context_cut", "above")]
        pairs += [("retrieval_support", "below")]
        pairs += [
            ("init_loss", "above"),
            ("data_wait", "above"),
            ("accuracy", "below"),
            ("baseline", "below"),
        ]
        for name, side in pairs:
            warn, fail = getattr(self, f"{name}_warn"), getattr(self, f"{name}_fail")
            if (side == "above" and warn > fail) or (side == "below" and warn < fail):
                raise ValueError(f"{name}_warn ({warn}) must come before {name}_fail ({fail})")
        return self


MAX_PROBES = 16
MAX_PROBE_CHARS = 500
MAX_PROBE_TOKENS = 256


class ProbeSpec(_Strict):
    """A prompt the model answers (greedily) at every evaluation, to see how its answer changes."""

    prompt: str = Field(min_length=1, max_length=MAX_PROBE_CHARS)
    expected: str | None = Field(
        default=None, min_length=1, max_length=MAX_PROBE_CHARS, description="the right answer, to score by"
    )
    max_new_tokens: int | None = Field(
        default=None,
        ge=1,
        le=MAX_PROBE_TOKENS,
        description="tokens to answer with (default: the expected answer's and 4 more, else 32)",
    )


class JobSpec(_Strict):
    """What a client submits: ``POST /v1/jobs`` takes exactly this."""

    dataset: DatasetSpec
    data_service: str | None = Field(
        default=None, min_length=1, max_length=256, pattern=r"^[A-Za-z0-9_.\-\[\]:]+:\d{1,5}$"
    )
    model: ModelSpec = Field(default_factory=lambda: ModelSpec(model_type="gpt-nano"))
    training: TrainingSpec = Field(default_factory=TrainingSpec)
    checks: ChecksSpec = Field(default_factory=ChecksSpec)
    # A person's handle on the run, and words to find it by (``GET /v1/jobs?tag=...&name=...``).
    name: str | None = Field(default=None, min_length=1, max_length=128)
    tags: list[Tag] = Field(default_factory=list, max_length=MAX_TAGS)
    # Lineage. ``init_from``: start from that job's checkpoint weights (fresh optimizer, from step 0) when
    # this job has no checkpoint of its own. ``forked_from``: the job this one was forked from, for people.
    init_from: JobId | None = None
    forked_from: JobId | None = None

    @field_validator("name")
    @classmethod
    def _printable_name(cls, name: str | None) -> str | None:
        if name is not None and (not name.strip() or not name.isprintable()):
            raise ValueError("a name needs a printable character and no control characters (newlines, tabs)")
        return name

    @field_validator("tags")
    @classmethod
    def _distinct_tags(cls, tags: list[str]) -> list[str]:
        """A tag given twice counts once; the order given is kept."""
        return list(dict.fromkeys(tags))

    probes: list[ProbeSpec] = Field(
        default_factory=list,
        max_length=MAX_PROBES,
        description="prompts answered at every evaluation; the report shows how each answer changed",
    )


class JobStatus(StrEnum):
    queued = "queued"
    running = "running"
    succeeded = "succeeded"
    failed = "failed"
    cancelled = "cancelled"

    @property
    def finished(self) -> bool:
        return self in (JobStatus.succeeded, JobStatus.failed, JobStatus.cancelled)


class Progress(BaseModel):
    step: int = 0
    max_iters: int


class JobView(BaseModel):
    """A job as readers see it (``GET /v1/jobs/{id}``, the jobs list).

    ``spec`` is null for a record whose spec no longer reads (one stored before a fix refused it): such a job
    is shown failed, with why, rather than failing the read.
    """

    id: str
    status: JobStatus
    spec: JobSpec | None
    progress: Progress
    metrics: dict[str, float] = Field(default_factory=dict)
    error: str | None = None
    attempts: int = 0
    worker: str | None = None
    dataset_id: str | None = None
    verdict: str | None = Field(
        default=None,
        description="The fit report's verdict (fit, fit with warnings, not fit) once it is written; "
        "null before",
    )
    created_at: float = Field(default_factory=time.time)
    started_at: float | None = None
    finished_at: float | None = None


class JobRecord(JobView):
    """A job's state as stored in Redis, with a spec that reads: what a worker runs."""

    spec: JobSpec
