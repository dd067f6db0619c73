"""The `simtrain` CLI against a real gateway (in a thread), a real Redis and a fake data service."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from gateway.app import create_app
from gateway.config import GatewaySettings
from simtrain.cli import app
from simtrain.data.v1 import data_service_pb2 as pb
from simtrain.jobs import JobStatus
from simtrain.queue import JobQueue
from simtrain.settings import Settings
from tests.integration.gateway_support import FakeDataService, GrpcServer, dataset_info, serve
from tests.simtrain_up import SIMTRAIN, stack_env, start_up
from trainer_service.report.build import refused_report

TOKEN = "cli-token"


class ListingDataService(FakeDataService):
    """The fake data service, with two modules that share options and a listing of what was uploaded."""

    def ListModules(self, request, context):
        shared = [
            pb.ModuleOption(name="val_fraction", description="held-out share", default_value="0.1"),
            pb.ModuleOption(name="separator", description="between [documents]", default_value="\n"),
        ]
        digits = pb.ModuleOption(name="digits", description="digits per operand", default_value="2")
        return pb.ListModulesResponse(
            modules=[
                pb.ModuleInfo(name="add", description="Synthetic [a+b]", options=[*shared, digits]),
                pb.ModuleInfo(name="text", description="Text", options=shared),
            ]
        )

    def ListSources(self, request, context):
        done = [u for u in self.uploads if u["complete"]]
        return pb.ListSourcesResponse(
            sources=[
                pb.SourceFile(name=f"uploads/{u['filename']}", size_bytes=sum(u["chunks"])) for u in done
            ]
        )


@pytest.fixture
def fake_data() -> Iterator[tuple[FakeDataService, GrpcServer]]:
    fake = ListingDataService()
    server = GrpcServer(fake)
    yield fake, server
    server.stop()


@pytest.fixture
def gateway(
    redis_url: str,
    key_prefix: str,
    fake_data: tuple[FakeDataService, GrpcServer],
    job_queue: JobQueue,
    tmp_path,
) -> Iterator[str]:
    settings = Settings(
        redis_url=redis_url,
        key_prefix=key_prefix,
        data_service_addr=fake_data[1].address,
        state_dir=tmp_path / "var",
    )
    with serve(create_app(settings, GatewaySettings(api_token=TOKEN))) as client:
        yield str(client.base_url)


def cli(gateway: str | None, *args: str, token: str | None = TOKEN, **env: str | None) -> Any:
    """Run the CLI in this process; an exception (a traceback for a user) fails the test."""
    env = {"SIMTRAIN_GATEWAY_URL": gateway, "COLUMNS": "150", "SIMTRAIN_API_TOKEN": token} | env
    return CliRunner().invoke(app, list(args), env=env, catch_exceptions=False)


def submitted(gateway: str, *args: str) -> str:
    """Submit with ``args``; the new job's full id."""
    done = cli(gateway, "submit", *args, "--json")
    assert done.exit_code == 0, done.output
    return json.loads(done.output)["id"]


def test_submit_from_yaml_with_flag_overrides(gateway: str, job_queue: JobQueue, tmp_path: Path) -> None:
    spec = tmp_path / "job.yaml"
    spec.write_text(
        "dataset: {module: text, source: notes.txt}\n"
        "model: {n_layer: 2, n_head: 2, n_embd: 32}\n"
        "training:\n  max_iters: 40\n  batch_size: 8\n"
    )
    done = cli(gateway, "submit", "--spec", str(spec), "--max-iters", "25", "--json")
    assert done.exit_code == 0, done.output
    accepted = json.loads(done.output)
    assert accepted["status"] == "queued"
    record = job_queue.get(accepted["id"])
    assert record.spec.training.max_iters == 25 and record.spec.training.batch_size == 8
    assert record.spec.model.sizes() == (2, 2, 32)
    assert record.spec.dataset.source == "notes.txt"

    preset = submitted(gateway, "--spec", str(spec), "--model-type", "gpt-micro", "--source", "b.txt")
    record = job_queue.get(preset)
    assert record.spec.model.model_type == "gpt-micro" and record.spec.dataset.source == "b.txt"


def test_submit_json_spec_and_defaults(gateway: str, job_queue: JobQueue, tmp_path: Path) -> None:
    spec = tmp_path / "job.json"
    spec.write_text(json.dumps({"dataset": {"id": "ds-1"}, "training": {"max_iters": 7}}))
    record = job_queue.get(submitted(gateway, "--spec", str(spec)))
    assert record.spec.dataset.id == "ds-1" and record.spec.training.max_iters == 7
    plain = job_queue.get(submitted(gateway))
    assert plain.spec.dataset.source == "tiny.txt" and plain.spec.model.model_type == "gpt-nano"
    assert plain.spec.training.max_iters == 300


def test_refusals_exit_1_mistakes_2_and_no_gateway_5(gateway: str, tmp_path: Path) -> None:
    invalid = cli(gateway, "submit", "--max-iters", "0")
    assert (
        invalid.exit_code == 1 and "training.max_iters" in invalid.output and "(HTTP 422)" in invalid.output
    )
    assert "/v1/jobs" not in invalid.output  # the message, not the request
    unauthorized = cli(gateway, "submit", token=None)
    assert unauthorized.exit_code == 1 and "(HTTP 401)" in unauthorized.output
    wrong = cli(gateway, "jobs", token="nope")
    assert wrong.exit_code == 1 and "401" in wrong.output
    nowhere = cli("http://127.0.0.1:1", "jobs")
    assert nowhere.exit_code == 5 and "cannot reach the gateway" in nowhere.output
    assert "simtrain up" in nowhere.output  # says how to get one

    (tmp_path / "list.yaml").write_text("- not\n- a mapping\n")
    (tmp_path / "broken.yaml").write_text("dataset: {source: [a\n")
    (tmp_path / "broken.json").write_text("{")
    mistakes = {
        ("submit", "--spec", str(tmp_path / "list.yaml")): "is not a mapping",
        ("submit", "--spec", str(tmp_path / "broken.yaml")): "is not valid YAML",
        ("submit", "--spec", str(tmp_path / "broken.json")): "is not valid JSON",
        ("submit", "--spec", str(tmp_path / "none.yaml")): "cannot read the spec",
        ("submit", "--spec", str(tmp_path)): "cannot read the spec",
        ("submit", "--check", "no_such=1"): "no such threshold",
        ("submit", "--check", "gap_warn=high"): "a number is asked",
        ("submit", "--option", "novalue"): "is not KEY=VALUE",
        ("datasets", "upload", str(tmp_path / "none.txt")): "cannot read",
        ("jobs", "--status", "nope"): "nope",
        ("report", "not-hex"): "is not a job id",
        ("jobs", "--gateway", "localhost:8000"): "is not a URL",
    }
    for args, words in mistakes.items():
        done = cli(gateway, *args)
        assert done.exit_code == 2, (args, done.output)
        assert words in done.output, (args, done.output)
        assert "Traceback" not in done.output
    bad_setting = cli(None, "jobs", SIMTRAIN_LEASE_MS="soon")
    assert bad_setting.exit_code == 2 and "SIMTRAIN_LEASE_MS" in bad_setting.output


def test_json_errors(gateway: str, tmp_path: Path) -> None:
    cases = [
        (("http://127.0.0.1:1", "jobs"), 5, "gateway_unreachable"),
        ((gateway, "submit", "--max-iters", "0"), 1, "validation_error"),
        ((gateway, "report", "f" * 32), 2, "not_found"),
        ((gateway, "submit", "--spec", str(tmp_path / "none.yaml")), 2, "usage_error"),
        ((gateway, "jobs", "--limit", "many"), 2, "usage_error"),  # refused by the command line parser
    ]
    for (url, *args), status, code in cases:
        done = cli(url, *args, "--json")
        assert done.exit_code == status, done.output
        error = json.loads(done.output)["error"]
        assert error["code"] == code and error["exit_status"] == status and error["message"]


def test_submit_with_idempotency_key(gateway: str) -> None:
    first = cli(gateway, "submit", "--idempotency-key", "abc").output.strip()
    assert cli(gateway, "submit", "--idempotency-key", "abc").output.strip() == first


def fake_trainer(queue: JobQueue, job_id: str, outcome: JobStatus, steps: int = 5) -> threading.Thread:
    def run() -> None:
        time.sleep(0.3)
        queue.start(job_id, "w1")
        for step in range(1, steps + 1):
            time.sleep(0.05)
            queue.add_metrics(job_id, {"step": step, "train/loss": 3.0 / step, "tokens_per_s": 1234.0})
        queue.finish(job_id, outcome, "it broke" if outcome is JobStatus.failed else None)

    thread = threading.Thread(target=run)
    thread.start()
    return thread


@pytest.mark.parametrize(
    ("outcome", "exit_code"), [(JobStatus.succeeded, 0), (JobStatus.failed, 1), (JobStatus.cancelled, 3)]
)
def test_watch_exits_with_the_outcome(gateway: str, job_queue: JobQueue, outcome: JobStatus, exit_code: int):
    job_id = submitted(gateway, "--max-iters", "5")
    thread = fake_trainer(job_queue, job_id, outcome)
    watched = cli(gateway, "watch", job_id)
    thread.join()
    assert watched.exit_code == exit_code, watched.output
    assert outcome.value in watched.output
    assert "step 5/5" in watched.output
    if outcome is JobStatus.failed:
        assert "it broke" in watched.output


def test_submit_watch_json(gateway: str, job_queue: JobQueue) -> None:
    runner = threading.Thread(target=lambda: None)
    result: dict[str, Any] = {}

    def submit() -> None:
        result["run"] = cli(gateway, "submit", "--max-iters", "3", "--watch", "--json")

    runner = threading.Thread(target=submit)
    runner.start()
    deadline = time.monotonic() + 10
    while not job_queue.r.xlen(job_queue.stream):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    job_id = job_queue.r.xrange(job_queue.stream)[0][1]["id"]
    fake_trainer(job_queue, job_id, JobStatus.succeeded, steps=3).join()
    runner.join(timeout=30)
    final = json.loads(result["run"].output)
    assert result["run"].exit_code == 0
    assert final["id"] == job_id and final["status"] == "succeeded" and final["progress"]["step"] == 3


def test_jobs_cancel_delete_report(gateway: str, job_queue: JobQueue) -> None:
    ids = [submitted(gateway, "--max-iters", "9") for _ in range(3)]
    listed = json.loads(cli(gateway, "jobs", "--json").output)
    assert [j["id"] for j in listed["jobs"]] == ids[::-1]
    table = cli(gateway, "jobs", "--limit", "2")
    assert ids[2][:8] in table.output and ids[0][:8] not in table.output and "--cursor" in table.output
    assert ids[2] not in table.output  # short ids

    cancelled = cli(gateway, "cancel", ids[0], "--json")
    assert json.loads(cancelled.output)["status"] == "cancelled"
    assert "cancelled" in cli(gateway, "jobs", "--status", "cancelled").output
    job_queue.start(ids[1], "w1")
    assert "stops at its next step" in cli(gateway, "cancel", ids[1]).output

    assert cli(gateway, "delete", ids[1]).exit_code == 1  # still running
    assert cli(gateway, "delete", ids[0]).exit_code == 0
    gone = cli(gateway, "report", ids[0])
    assert gone.exit_code == 2 and f"no job with id {ids[0]}" in gone.output
    assert (
        cli(gateway, "report", ids[1][:8]).exit_code == 1
        and "no report yet" in cli(gateway, "report", ids[1]).output
    )

    report = {
        "job_id": ids[2],
        "loss_at_init": {"val": 3.9, "expected_ln_vocab": 3.87},
        "final": {"train_loss": 1.1, "val_loss": 1.2},
        "samples": [{"prompt": "Once", "completion": " upon a time"}],
        "checks": [{"name": "loss_falls", "verdict": "pass", "reason": "fell by 2.7"}],
        "checkpoint": "/tmp/x/checkpoint.pt",
        "baselines": {
            "unigram_nats": 1.8,
            "uniform_nats": 3.87,
            "below_unigram_nats": 0.6,
            "below_unigram_share": 0.333,
            "below_uniform_nats": 2.67,
            "below_uniform_share": 0.69,
        },
    }
    job_queue.set_report(ids[2], report)
    shown = cli(gateway, "report", ids[2])
    assert shown.exit_code == 0
    for words in (
        "loss at init 3.900",
        "final train loss",
        "'Once' → ' upon a time'",
        "loss_falls",
        "fell by 2.7",
    ):
        assert words in shown.output
    assert "/tmp/x" not in shown.output  # no path on the server
    assert "learned: val loss 0.600 nats (33.3%) below the unigram baseline 1.800" in shown.output
    assert json.loads(cli(gateway, "report", ids[2], "--json").output) == report


def test_a_report_of_data_never_trained_prints_not_fit_and_why(gateway: str, job_queue: JobQueue) -> None:
    job_id = submitted(gateway)
    why = "the data service cannot prepare the dataset: 40 tokens, fewer than one block of 65"
    job_queue.set_report(job_id, refused_report(job_id, {"module": "text", "source": "tiny.txt"}, why))
    shown = cli(gateway, "report", job_id)
    assert shown.exit_code == 4
    assert "not fit" in shown.output and "batches_served" in shown.output and "fewer than one" in shown.output
    assert "loss at init" not in shown.output


def test_checkpoint_download(gateway: str, job_queue: JobQueue, tmp_path: Path) -> None:
    job_id = submitted(gateway)
    missing = cli(gateway, "checkpoint", job_id, "-o", str(tmp_path / "c.pt"))
    assert missing.exit_code == 1 and "no checkpoint yet" in missing.output
    path = tmp_path / "var" / "jobs" / job_id / "checkpoint.pt"
    path.parent.mkdir(parents=True)
    path.write_bytes(b"\x00weights" * 1000)
    done = cli(gateway, "checkpoint", job_id, "-o", str(tmp_path / "c.pt"))
    assert done.exit_code == 0 and "8,000 bytes" in done.output
    assert (tmp_path / "c.pt").read_bytes() == path.read_bytes()


def test_datasets_commands(
    gateway: str, fake_data: tuple[FakeDataService, GrpcServer], tmp_path: Path
) -> None:
    fake, _ = fake_data
    modules = cli(gateway, "datasets", "modules")
    assert "text" in modules.output and "val_fraction=0.1" in modules.output
    assert json.loads(cli(gateway, "datasets", "list", "--json").output)[0]["id"] == "ds-1"
    assert "ds-1" in cli(gateway, "datasets", "list").output
    assert "short source" in cli(gateway, "datasets", "show", "ds-1").output
    assert cli(gateway, "datasets", "show", "nope").exit_code == 1

    source = tmp_path / "notes.txt"
    source.write_bytes(b"some words\n" * 50_000)
    uploaded = json.loads(cli(gateway, "datasets", "upload", str(source), "--json").output)
    assert uploaded["source"] == "uploads/notes.txt" and uploaded["size_bytes"] == 550_000
    assert max(fake.uploads[0]["chunks"]) <= 1024 * 1024
    named = cli(gateway, "datasets", "upload", str(source), "--name", "other.txt")
    assert "uploads/other.txt" in named.output

    prepared = cli(
        gateway,
        "datasets",
        "prepare",
        "--source",
        "notes.txt",
        "--tokenizer",
        "byte",
        "--option",
        "a=1",
        "--json",
    )
    assert json.loads(prepared.output)["id"] == "ds-notes.txt"
    refused = cli(gateway, "datasets", "prepare", "--source", "bad.txt")
    assert refused.exit_code == 1 and "not UTF-8" in refused.output
    assert cli(gateway, "datasets", "prepare", "--source", "x", "--option", "novalue").exit_code == 2


# -- up and down ------------------------------------------------------------------------------------


def test_up_then_down(redis_url: str, key_prefix: str, tmp_path: Path) -> None:
    env = stack_env(os.environ | {"REDIS_URL": redis_url}, key_prefix, tmp_path)
    up, _ = start_up(env)
    try:
        pid_file = tmp_path / "var" / "simtrain-up.json"
        info = json.loads(pid_file.read_text())
        assert info["pid"] == up.pid
        assert httpx.get(f"{info['gateway']}/healthz").json() == {"status": "ok"}

        # Another command finds this stack (port 0: a free one) by the state file alone.
        alone = {k: v for k, v in env.items() if k != "SIMTRAIN_GATEWAY_URL"}
        found = subprocess.run(
            [str(SIMTRAIN), "jobs", "--json"], env=alone, capture_output=True, text=True, timeout=30
        )
        assert found.returncode == 0 and json.loads(found.stdout) == {"jobs": [], "next_cursor": None}

        again = subprocess.run([str(SIMTRAIN), "up"], env=env, capture_output=True, text=True, timeout=30)
        assert again.returncode == 1 and "already running" in again.stdout

        down = subprocess.run([str(SIMTRAIN), "down"], env=env, capture_output=True, text=True, timeout=90)
        assert down.returncode == 0, down.stdout + down.stderr
        assert "stopped" in down.stdout
        assert up.wait(timeout=10) == 0
        assert not pid_file.exists()
        nothing = subprocess.run([str(SIMTRAIN), "down"], env=env, capture_output=True, text=True, timeout=30)
        assert nothing.returncode == 0 and "no local stack is running" in nothing.stdout
    finally:
        if up.poll() is None:
            up.send_signal(signal.SIGTERM)
            up.wait(timeout=60)


# -- short ids, submit flags, tables, report, datasets, logs -----------------------------------------


def test_short_ids_and_unique_prefixes(gateway: str, job_queue: JobQueue) -> None:
    printed = cli(gateway, "submit").output.strip()
    assert len(printed) == 8
    (first_job,) = job_queue.list()[0]
    assert first_job.id.startswith(printed)
    ids = [first_job.id] + [job_queue.submit(first_job.spec).id for _ in range(16)]

    # 17 ids, 16 hex digits: some digit starts two of them
    digit = next(d for d in "0123456789abcdef" if sum(i.startswith(d) for i in ids) > 1)
    ambiguous = cli(gateway, "report", digit)
    assert ambiguous.exit_code == 2 and "give more digits" in ambiguous.output
    assert all(i in ambiguous.output for i in ids[:5] if i.startswith(digit))
    as_json = json.loads(cli(gateway, "watch", digit, "--json").output)["error"]
    assert as_json["code"] == "ambiguous_id" and as_json["exit_status"] == 2

    unknown = next(
        p for p in (f"{d}0000000" for d in "0123456789abcdef") if not any(i.startswith(p) for i in ids)
    )
    missing = cli(gateway, "cancel", unknown)
    assert missing.exit_code == 2 and f"no job id starts with {unknown}" in missing.output

    target = ids[3]
    cancelled = cli(gateway, "cancel", target[:8].upper())
    assert cancelled.exit_code == 0 and f"job {target[:8]} cancelled" in cancelled.output
    assert job_queue.get(target).status is JobStatus.cancelled
    assert cli(gateway, "delete", target[:6]).output.strip() == f"deleted job {target[:8]}"


def test_submit_flags(gateway: str, job_queue: JobQueue, tmp_path: Path) -> None:
    spec = tmp_path / "job.yaml"
    spec.write_text("dataset: {source: pairs.jsonl}\ntraining: {max_iters: 10}\n")
    job_id = submitted(
        gateway,
        "--spec",
        str(spec),
        "--packing",
        "pairs",
        "--option",
        "prompt_field=q",
        "--option",
        "completion_field=a=b",
        "--check",
        "gap_warn=0.3",
        "--check",
        "overfit_steps=0",
    )
    record = job_queue.get(job_id).spec
    assert record.dataset.module == "text"  # the default module, for a spec file without one
    assert record.dataset.packing == "pairs" and record.dataset.source == "pairs.jsonl"
    assert record.dataset.options == {"prompt_field": "q", "completion_field": "a=b"}
    assert record.checks.gap_warn == 0.3 and record.checks.overfit_steps == 0
    assert record.training.max_iters == 10

    helped = cli(gateway, "submit", "--help")
    for flag in ("--packing", "--option", "--check", "--module", "--batch-size", "--seed", "--gateway"):
        assert flag in helped.output
    assert "Exit status" in helped.output and "5 the gateway cannot be reached" in helped.output


def test_names_and_tags_on_submit_and_in_the_jobs_list(gateway: str, job_queue: JobQueue, tmp_path: Path):
    spec = tmp_path / "job.yaml"
    spec.write_text("dataset: {source: a.txt}\ntags: [from-file]\n")
    tagged = submitted(gateway, "--spec", str(spec), "--name", "Baseline", "--tag", "lr", "--tag", "v1,x")
    record = job_queue.get(tagged).spec
    assert record.name == "Baseline" and record.tags == ["from-file", "lr", "v1", "x"]
    other = submitted(gateway, "--name", "lower lr", "--tag", "lr")
    plain = submitted(gateway)

    table = cli(gateway, "jobs", "--tag", "lr")
    assert table.exit_code == 0, table.output
    assert tagged[:8] in table.output and other[:8] in table.output and plain[:8] not in table.output
    assert "Baseline #from-file #lr #v1 #x" in " ".join(table.output.split())
    listed = json.loads(cli(gateway, "jobs", "--tag", "lr", "--tag", "v1", "--json").output)
    assert [j["id"] for j in listed["jobs"]] == [tagged]
    listed = json.loads(cli(gateway, "jobs", "--name", "LOWER", "--json").output)
    assert [j["id"] for j in listed["jobs"]] == [other]
    paged = cli(gateway, "jobs", "--tag", "lr", "--limit", "1")
    assert "more: simtrain jobs --tag lr --cursor " in paged.output

    refused = cli(gateway, "submit", "--tag", "two words")
    assert refused.exit_code == 1 and "tags.0" in refused.output and "without spaces" in refused.output
    refused = cli(gateway, "jobs", "--tag", "two words")
    assert refused.exit_code == 1 and "tag" in refused.output


def test_fork_changes_settings_and_can_start_from_the_checkpoint(
    gateway: str, job_queue: JobQueue, tmp_path: Path
) -> None:
    source = submitted(gateway, "--max-iters", "40", "--name", "base", "--tag", "a")
    done = cli(gateway, "fork", source[:8], "--max-iters", "500", "--lr", "1e-4", "--json")
    assert done.exit_code == 0, done.output
    spec = job_queue.get(json.loads(done.output)["id"]).spec
    assert spec.training.max_iters == 500 and spec.training.learning_rate == 1e-4
    assert spec.forked_from == source and spec.init_from is None and spec.name == "base"

    refused = cli(gateway, "fork", source[:8], "--from-checkpoint")
    assert refused.exit_code == 1 and "has no checkpoint" in refused.output
    checkpoint = tmp_path / "var" / "jobs" / source / "checkpoint.pt"
    checkpoint.parent.mkdir(parents=True)
    checkpoint.write_bytes(b"a checkpoint the gateway only checks is there")
    done = cli(
        gateway,
        "fork",
        source[:8],
        "--from-checkpoint",
        "--set",
        "training.warmup_iters=5",
        "--set",
        "checks.gap_warn=0.25",
        "--option",
        "val_fraction=0.2",
        "--tag",
        "b",
        "--name",
        "more steps",
    )
    assert done.exit_code == 0, done.output
    new_id = resolve_printed(done.output, job_queue)
    spec = job_queue.get(new_id).spec
    assert spec.init_from == source and spec.training.warmup_iters == 5 and spec.checks.gap_warn == 0.25
    assert spec.dataset.options == {"val_fraction": "0.2"}
    assert spec.tags == ["a", "b"] and spec.name == "more steps"

    longer = cli(gateway, "fork", source[:8], "--from-checkpoint", "--set", "training.block_size=128")
    assert longer.exit_code == 1
    assert "changes.training.block_size: the checkpoint has block_size 64" in " ".join(longer.output.split())
    assert cli(gateway, "fork", source[:8], "--set", "init_from=x").exit_code == 2
    assert cli(gateway, "fork", source[:8], "--set", "nokey").exit_code == 2
    assert cli(gateway, "fork", "ffffffff").exit_code == 2
    assert "--from-checkpoint" in cli(gateway, "fork", "--help").output


def resolve_printed(output: str, job_queue: JobQueue) -> str:
    """The full id of the job whose short id the command printed."""
    printed = output.strip()
    [match] = [j.id for j in job_queue.list(limit=200)[0] if j.id.startswith(printed)]
    return match


def test_tables_fit_the_terminal_and_are_whole_when_piped(gateway: str, job_queue: JobQueue) -> None:
    long_source = "a-long-folder-name/" * 5 + "notes.txt"
    job_id = submitted(gateway, "--source", long_source)
    job_queue.set_report(job_id, {"job_id": job_id, "verdict": "fit with warnings", "checks": []})
    piped = cli(gateway, "jobs", COLUMNS=None)
    assert f"text:{long_source}" in piped.output and "fit with warnings" in piped.output
    assert all(line == line.rstrip() for line in piped.output.splitlines())
    narrow = cli(gateway, "jobs", COLUMNS="80")
    assert all(len(line) <= 80 for line in narrow.output.splitlines())
    assert job_id[:8] in narrow.output  # the id is never cut

    named = submitted(gateway, "--name", "a fairly long run name", "--tag", "one,two")
    narrow = cli(gateway, "jobs", COLUMNS="80")
    assert all(len(line) <= 80 for line in narrow.output.splitlines()), narrow.output
    assert job_id[:8] in narrow.output and named[:8] in narrow.output
    lines = narrow.output.splitlines()
    first = next(i for i, line in enumerate(lines) if line.split()[:1] == [named[:8]])
    assert lines[first + 1].split()[:2] == ["a", "fairly"]  # the name goes under the id


def test_report_is_one_line_per_check_with_advice_only_where_failing(
    gateway: str, job_queue: JobQueue
) -> None:
    job_id = submitted(gateway)
    long_reason = "the commonest target is 19.2% of all targets; " * 6
    checks = [
        {
            "name": "targets_aligned",
            "verdict": "fail",
            "reason": "y is not x shifted",
            "threshold": "fail < 0.99",
            "setting": "checks.aligned_min",
        }
    ]
    checks += [
        {
            "name": f"check_{i}",
            "verdict": "pass",
            "reason": long_reason,
            "threshold": "warn > 0.6",
            "setting": None,
        }
        for i in range(18)
    ]
    checks.append({"name": "accuracy", "verdict": "skip", "reason": "pairs packing only", "threshold": None})
    report = {"job_id": job_id, "verdict": "not fit", "summary": "targets_aligned fails", "checks": checks}
    job_queue.set_report(job_id, report)

    shown = cli(gateway, "report", job_id[:8], COLUMNS="100")
    assert shown.exit_code == 4
    lines = shown.output.splitlines()
    assert lines[0] == "verdict: not fit (targets_aligned fails)"
    assert len(lines) <= len(checks) + 4, shown.output
    assert "threshold fail < 0.99; set with --check aligned_min=…" in shown.output
    assert (
        shown.output.count("set with") == 1 and "warn > 0.6" not in shown.output
    )  # advice: the failing only
    assert all(len(line) <= 100 for line in lines) and "…" in lines[3]  # long reasons shortened
    assert f"/v1/jobs/{job_id}/report.html" in lines[-1]
    piped = cli(gateway, "report", job_id, COLUMNS=None)
    assert long_reason.strip() in piped.output  # piped: whole


def test_datasets_show_sources_and_modules_read_well(
    gateway: str, fake_data: tuple[FakeDataService, GrpcServer], tmp_path: Path
) -> None:
    fake, _ = fake_data
    stats = {
        "num_examples": {"train": 814, "val": 86},
        "num_tokens": {"train": 191395, "val": 21319},
        "example_tokens": {"count": 900, "min": 132, "mean": 236.3, "p50": 228.5, "p95": 330.0, "max": 358},
        "duplicate_examples": 3,
        "val_tokens_unseen_in_train": 2,
        "unseen_examples": "bn",
        "chars": 1000,
        "trained_tokens": {"train": 40000, "val": 4000},
        "sources": {
            "decks/Geschäftsprozess.apkg": {
                "examples": {"train": 800, "val": 80},
                "tokens": {"train": 190000, "val": 21000},
            },
            "talk.jsonl": {"examples": {"train": 14, "val": 6}, "tokens": {"train": 1395, "val": 319}},
        },
    }
    info = dataset_info("ds-stats")
    info.stats_json = json.dumps(stats)
    fake.datasets["ds-stats"] = info
    shown = cli(gateway, "datasets", "show", "ds-stats")
    assert shown.exit_code == 0, shown.output
    for words in (
        "train 814, val 86",
        "train 191,395, val 21,319",
        "min 132, mean 236.3, median 228, p95 330, max 358",
        "duplicate examples",
        "'b' 'n'",
        "chars",
        "short source",
        "tokens that take loss",
        "train 40,000, val 4,000",
        "decks/Geschäftsprozess.apkg: 880 examples, 211,000 tokens (train 800, val 80)",
        "talk.jsonl: 20 examples, 1,714 tokens (train 14, val 6)",
    ):
        assert words in shown.output, words
    assert '"num_tokens"' not in shown.output  # read, not raw JSON

    assert "no sources uploaded" in cli(gateway, "datasets", "sources").output
    source = tmp_path / "notes.txt"
    source.write_bytes(b"some words\n" * 100)
    cli(gateway, "datasets", "upload", str(source))
    listed = cli(gateway, "datasets", "sources")
    assert "uploads/notes.txt" in listed.output and "1,100 bytes" in listed.output
    as_json = json.loads(cli(gateway, "datasets", "sources", "--json").output)
    assert as_json == [
        {"name": "uploads/notes.txt", "size_bytes": 1100, "uploaded_at": "1970-01-01T00:00:00Z"}
    ]

    modules = cli(gateway, "datasets", "modules").output
    assert modules.count("val_fraction=0.1") == 1 and modules.count("separator=") == 1  # shared: shown once
    assert 'separator="\\n"' in modules and "between [documents]" in modules and "Synthetic [a+b]" in modules
    assert "digits=2" in modules


def test_logs_prints_and_follows(gateway: str, job_queue: JobQueue) -> None:
    job_id = submitted(gateway)
    job_queue.append_log(job_id, "INFO", "preparing the dataset [text]", at=1_700_000_000.5)
    job_queue.append_log(job_id, "WARNING", "slow data", at=1_700_000_001.0)
    shown = cli(gateway, "logs", job_id[:8])
    assert shown.exit_code == 0
    lines = shown.output.splitlines()
    assert len(lines) == 2 and "INFO" in lines[0] and lines[0].endswith("preparing the dataset [text]")
    assert "WARNING" in lines[1] and "slow data" in lines[1]
    as_json = [json.loads(line) for line in cli(gateway, "logs", job_id, "--json").output.splitlines()]
    assert [(e["seq"], e["level"]) for e in as_json] == [(1, "INFO"), (2, "WARNING")]

    def trainer() -> None:
        time.sleep(0.5)
        job_queue.start(job_id, "w1")
        job_queue.append_log(job_id, "INFO", "step 10")
        time.sleep(1.2)
        job_queue.append_log(job_id, "INFO", "done training")
        job_queue.finish(job_id, JobStatus.succeeded)

    thread = threading.Thread(target=trainer)
    thread.start()
    followed = cli(gateway, "logs", job_id, "-f")
    thread.join()
    assert followed.exit_code == 0
    assert [line.split()[-1] for line in followed.output.splitlines()] == ["[text]", "data", "10", "training"]


def test_checkpoint_into_a_missing_folder_is_a_mistake(gateway: str, tmp_path: Path) -> None:
    job_id = submitted(gateway)
    missing = cli(gateway, "checkpoint", job_id[:8], "-o", str(tmp_path / "missing" / "dir" / "x.pt"))
    assert missing.exit_code == 2 and "there is no folder" in missing.output
    folder = cli(gateway, "checkpoint", job_id[:8], "-o", str(tmp_path))
    assert folder.exit_code == 2 and "is a folder" in folder.output


def test_the_gateway_is_found_from_the_state_file_of_simtrain_up(gateway: str, tmp_path: Path) -> None:
    # A stand-in for `simtrain up`: a live process whose command line names simtrain.
    stand_in = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", "simtrain", "up"])
    try:
        state = tmp_path / "state"
        state.mkdir()
        (state / "simtrain-up.json").write_text(json.dumps({"pid": stand_in.pid, "gateway": gateway}))
        env = {"SIMTRAIN_STATE_DIR": str(state)}
        found = cli(None, "jobs", "--json", **env)
        assert found.exit_code == 0 and json.loads(found.output)["jobs"] == []
        assert cli("http://127.0.0.1:1", "jobs", **env).exit_code == 5  # the environment comes first
        assert (
            cli("http://127.0.0.1:1", "jobs", "--gateway", gateway, **env).exit_code == 0
        )  # the flag before it
    finally:
        stand_in.kill()
        stand_in.wait()
    cli(None, "jobs", **env)
    assert not (state / "simtrain-up.json").exists()  # a dead pid's file is stale: removed, not followed


def test_demo_saves_its_report_and_says_what_next(redis_url: str, key_prefix: str, tmp_path: Path) -> None:
    env = stack_env(os.environ | {"REDIS_URL": redis_url}, key_prefix, tmp_path)
    done = subprocess.run(
        [str(SIMTRAIN), "demo", "--max-iters", "10"], env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "verdict: " in done.stdout and "sample: " in done.stdout
    assert "asked: 'At noon, Ada' → '" in done.stdout  # the stack's generate server answered
    (page,) = (tmp_path / "var" / "demo").glob("*/report.html")
    assert f"report saved: {page.resolve()}" in done.stdout
    assert "<html" in page.read_text().lower()
    assert json.loads((page.parent / "report.json").read_text())["verdict"] in (
        "fit",
        "fit with warnings",
        "not fit",
    )
    tail = done.stdout[done.stdout.index("stopping the stack") :]
    for step in (
        "simtrain up",
        "simtrain datasets upload FILE",
        "simtrain submit --source NAME",
        "simtrain ask",
    ):
        assert step in tail


def test_report_shows_how_the_probes_answers_changed(gateway: str, job_queue: JobQueue) -> None:
    job_id = submitted(gateway)
    right = {"exact": True, "prefix": True, "token_accuracy": 1.0}
    probes = {
        "steps": [0, 100, 200],
        "shown_steps": [0, 100, 200],
        "items": [
            {
                "prompt": "21=",
                "expected": "12",
                "answers": [
                    {"step": 0, "text": "<9", "exact": False, "prefix": False, "token_accuracy": 0.0},
                    {"step": 100, "text": "13", "exact": False, "prefix": False, "token_accuracy": 0.5},
                    {"step": 200, "text": "12", **right},
                ],
            },
            {"prompt": "Once", "expected": None, "answers": [{"step": 200, "text": " upon"}]},
            {"prompt": "Zoë", "expected": None, "answers": [], "error": "cannot encode this probe: 'ë'"},
        ],
        "final": {"scored": 1, "exact": 1, "prefix": 1, "token_accuracy": 1.0},
    }
    job_queue.set_report(job_id, {"job_id": job_id, "verdict": "fit", "checks": [], "probes": probes})
    shown = cli(gateway, "report", job_id, COLUMNS=None)
    assert shown.exit_code == 0, shown.output
    out = shown.output
    assert "probes: 1 of 1 exact, 1 by prefix, 100% of expected tokens right at the last evaluation" in out
    header = next(line for line in out.splitlines() if "step 0" in line)
    assert header.split() == ["probe", "step", "0", "step", "100", "step", "200"]
    first = next(line for line in out.splitlines() if line.lstrip().startswith("'21='"))
    assert first.split() == ["'21='", "'<9'", "'13'", "'12'"]
    assert "✗ 0%" in out and "✗ 50%" in out and "exact 100%" in out and "' upon'" in out
    assert "cannot encode this probe: 'ë'" in out

    # A retrieval dataset's probe shows the passages it was asked after; probes asked without, why.
    probes["items"][0]["context"] = "bafigo has the code 4821. " * 6
    probes["note"] = "asked without the retrieved context the dataset's rows have: no Retrieve"
    job_queue.set_report(job_id, {"job_id": job_id, "verdict": "fit", "checks": [], "probes": probes})
    out = cli(gateway, "report", job_id, COLUMNS="200").output
    assert "probes asked without the retrieved context the dataset's rows have: no Retrieve" in out
    assert "after context 'bafigo has the code 4821. bafigo" in out and "…'" in out


def test_submit_takes_probes_from_flags_after_the_specs(
    gateway: str, job_queue: JobQueue, tmp_path: Path
) -> None:
    spec = tmp_path / "job.yaml"
    spec.write_text("dataset: {module: text, source: notes.txt}\nprobes:\n  - {prompt: Once}\n")
    job_id = submitted(gateway, "--spec", str(spec), "--probe", "12+30==>42", "--probe", "Hello")
    probes = [p.model_dump(exclude_none=True) for p in job_queue.get(job_id).spec.probes]
    assert probes == [{"prompt": "Once"}, {"prompt": "12+30=", "expected": "42"}, {"prompt": "Hello"}]
    bad = cli(gateway, "submit", "--probe", "=>42")
    assert bad.exit_code == 1 and "probes.0.prompt" in bad.output  # the gateway names the field
