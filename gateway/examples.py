"""Example requests and responses for the OpenAPI document, kept apart so the routes stay readable."""

from __future__ import annotations

from typing import Any

JOB_ID = "5c0f3e9a8b7d4c21a0e6f1b2c3d4e5f6"
DATASET_ID = "text-9f2c41d07a3b"

SPEC: dict[str, Any] = {
    "dataset": {
        "module": "text",
        "source": "tiny.txt",
        "tokenizer": "char",
        "packing": "stream",
        "options": {},
    },
    "model": {"model_type": "gpt-nano"},
    "training": {
        "max_iters": 300,
        "batch_size": 32,
        "block_size": 64,
        "learning_rate": 5e-4,
        "seed": 0,
        "eval_interval": 100,
    },
    "checks": {},
}

SUBMIT_EXAMPLES: dict[str, Any] = {
    "text": {"summary": "gpt-nano on a text file", "value": SPEC},
    "prepared": {
        "summary": "A prepared dataset and explicit sizes",
        "value": {
            "dataset": {"id": DATASET_ID},
            "data_service": "127.0.0.1:50051",
            "model": {"n_layer": 2, "n_head": 2, "n_embd": 64},
            "training": {"max_iters": 1000, "lr_schedule": "cosine", "warmup_iters": 100},
        },
    },
    "minimal": {"summary": "Defaults for everything but the data", "value": {"dataset": SPEC["dataset"]}},
}

METRICS_ROW = {
    "step": 200.0,
    "train/loss": 1.12,
    "lr": 5e-4,
    "tokens_per_s": 58199.0,
    "data_wait_frac": 0.01,
}

RECORD: dict[str, Any] = {
    "id": JOB_ID,
    "status": "running",
    "spec": SPEC,
    "progress": {"step": 200, "max_iters": 300},
    "metrics": METRICS_ROW | {"val/loss": 1.05, "train/eval_loss": 1.09},
    "error": None,
    "attempts": 1,
    "worker": "trainer-0-4242",
    "dataset_id": DATASET_ID,
    "verdict": None,
    "created_at": 1767225600.0,
    "started_at": 1767225600.4,
    "finished_at": None,
}

JOB_PAGE = {"jobs": [RECORD], "next_cursor": "MTc2NzIyNTYwMC4wIDVjMGYz"}

GENERATE = {
    "job_id": JOB_ID,
    "step": 300,
    "prompt": "At noon, Ada",
    "completions": [{"text": " the baker walked to the old mill. At", "tokens": 34, "stopped": False}],
    "seconds": 0.41,
}

CANCEL = {"id": JOB_ID, "status": "running", "cancel_requested": True}

METRICS = {"job_id": JOB_ID, "metrics": [METRICS_ROW | {"step": 190.0}, METRICS_ROW]}

REPORT = {
    "job_id": JOB_ID,
    "dataset": {"id": DATASET_ID, "module": "text", "source": "tiny.txt", "vocab_size": 48, "warnings": []},
    "model": {"n_layer": 3, "n_head": 3, "n_embd": 48, "num_params": 85_632},
    "loss_at_init": {"val": 3.883, "expected_ln_vocab": 3.871},
    "final": {"train_loss": 0.605, "val_loss": 0.611},
    "curve": {"train": [[10, 3.2], [20, 2.9]], "val": [[0, 3.883], [100, 1.4]]},
    "verdict": "fit",
    "summary": "every check passes",
    "failing": [],
    "warnings": [],
    "checks": [
        {
            "name": "token_ids_in_range",
            "section": "data",
            "title": "token ids in range",
            "verdict": "pass",
            "reason": "every id of 392 batches is below the vocabulary size 48",
            "value": 0,
            "threshold": "fail > 0",
            "setting": None,
        }
    ],
    "trace": {"functions": {"forward": {"calls": 300, "total_s": 2.1, "mean_s": 0.007}}},
    "samples": [{"prompt": "The keeper of th", "completion": "e lighthouse gave it to Ada."}],
}

EVENTS = (
    "event: status\n"
    f'data: {{"id": "{JOB_ID}", "status": "running", "progress": {{"step": 0, "max_iters": 300}}, "...": ""}}'
    "\n\n"
    "event: metrics\nid: 1767225601000-0\n"
    'data: {"step": 10.0, "train/loss": 3.2, "lr": 0.0005, "tokens_per_s": 57000.0}\n\n'
    "event: end\n"
    f'data: {{"id": "{JOB_ID}", "status": "succeeded"}}\n\n'
)

MODULES = {
    "modules": [
        {
            "name": "text",
            "description": "Plain text files, tokenized as one stream",
            "options": [
                {"name": "val_fraction", "description": "Share held out for validation", "default": "0.1"}
            ],
        }
    ]
}

DATASET = {
    "id": DATASET_ID,
    "module": "text",
    "source": "tiny.txt",
    "tokenizer": "char",
    "packing": "stream",
    "vocab_size": 48,
    "splits": {"train": {"tokens": 90000, "examples": 1}, "val": {"tokens": 10000, "examples": 1}},
    "stats": {"chars": 100000},
    "warnings": [],
}

PREPARE = {"module": "text", "source": "tiny.txt", "tokenizer": "char", "packing": "stream", "options": {}}

UPLOAD = {
    "source": "uploads/notes.txt",
    "size_bytes": 100000,
    "sha256": "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
}

SOURCES = {
    "sources": [
        {"name": "notes.txt", "size_bytes": 100000, "uploaded_at": "2026-01-01T00:00:00Z"},
        {"name": "tiny.txt", "size_bytes": 1115394, "uploaded_at": "2025-12-31T23:59:59Z"},
    ]
}

MODELS = {"presets": [{"model_type": "gpt-nano", "n_layer": 3, "n_head": 3, "n_embd": 48}]}
