"""A real job trains on conversations: the trainer takes the masked batches, and the fit report sees
the mask (the masked share of targets) and judges single-reply answers in pairs packing."""

from __future__ import annotations

import json
import random
from typing import Any

import pytest

from simtrain.jobs import JobSpec
from simtrain.queue import JobQueue
from simtrain.settings import Settings
from tests.integration.trainer_support import DataService, job_spec
from trainer_service.job_runner import JobRun


def write_conversations(settings: Settings) -> str:
    rng = random.Random(1)
    lines = []
    for i in range(200):
        a, b = rng.randint(0, 9), rng.randint(0, 9)
        turns = [{"role": "user", "content": f"{a}+{b}"}, {"role": "assistant", "content": str(a + b)}]
        if i % 3 == 0:  # some go on for a second question
            turns += [{"role": "user", "content": f"{b}+{a}"}, {"role": "assistant", "content": str(a + b)}]
        lines.append(json.dumps({"messages": turns}))
    (settings.data_root / "sums.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return "sums.jsonl"


def run(settings: Settings, queue: JobQueue, address: str, packing: str) -> dict[str, Any]:
    spec = job_spec(address, max_iters=20, batch_size=8, block_size=24).model_dump()
    spec["dataset"] = {"module": "chat", "source": write_conversations(settings), "packing": packing}
    job = queue.submit(JobSpec.model_validate(spec))
    return JobRun(job, settings, queue, lambda: False).run()


@pytest.mark.parametrize("packing", ["stream", "pairs"])
def test_a_job_trains_on_conversations_and_reports_the_mask(
    settings: Settings, data_service: DataService, job_queue: JobQueue, packing: str
) -> None:
    report = run(settings, job_queue, data_service.address, packing)
    checks = {c["name"]: c for c in report["checks"]}
    assert checks["token_ids_in_range"]["verdict"] == "pass"
    assert checks["targets_aligned"]["verdict"] != "fail"
    masked = report["data"]["batches"]["masked_share"]
    assert 0.3 < masked < 1.0  # user turns and markers take no loss; the replies do
    assert report["data"]["trained_tokens"]["train"] > 0
    if packing == "pairs":
        accuracy = report["accuracy"]
        assert accuracy["examples"] > 0  # the single-reply conversations are judged
        for item in accuracy["items"]:  # the prompt ends where the reply starts; the answer is the reply
            assert item["prompt"].startswith("<|user|>") and item["prompt"].endswith("<|end|><|assistant|>")
            assert item["expected"].isdigit()
    # The chat checks read the same batches: replies and their <|end|> trained, the questions not.
    for name in ("chat_replies_trained", "chat_end_of_turn", "chat_prompts_untrained", "chat_role_order"):
        assert checks[name]["verdict"] == "pass", checks[name]
    assert checks["chat_markers"]["verdict"] == "pass", checks["chat_markers"]
    assert checks["chat_end_of_turn"]["value"] == 1.0 and checks["chat_prompts_untrained"]["value"] == 0.0
    assert report["data"]["chat"]["reply_ends"] > 0


def test_chats_pre_rendered_as_text_are_flagged_in_the_report(
    settings: Settings, data_service: DataService, job_queue: JobQueue
) -> None:
    """The common mistake: conversations written out with their markers as characters, read as text."""
    rng = random.Random(2)
    lines = []
    for _ in range(200):
        a, b = rng.randint(0, 9), rng.randint(0, 9)
        lines.append(json.dumps({"text": f"<|user|>{a}+{b}<|end|><|assistant|>{a + b}<|end|><|endoftext|>"}))
    (settings.data_root / "rendered.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    spec = job_spec(data_service.address, max_iters=20, batch_size=8, block_size=24).model_dump()
    spec["dataset"] = {"module": "jsonl", "source": "rendered.jsonl"}
    report = JobRun(job_queue.submit(JobSpec.model_validate(spec)), settings, job_queue, lambda: False).run()
    checks = {c["name"]: c for c in report["checks"]}
    assert checks["chat_markers"]["verdict"] == "warn" and "chat module" in checks["chat_markers"]["reason"]
    assert report["verdict"] != "fit"
    assert checks["chat_end_of_turn"]["verdict"] == "skip"
