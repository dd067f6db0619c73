"""Benchmark how an experiment's runs spread over workers: with 2 workers, does one sit idle while runs wait?

Starts Redis, a data service on a generated corpus and ``--workers`` trainer workers as real processes, queues
an experiment of ``--variants`` × ``--seeds`` small runs, and reads from the job records when each run ran
and on which worker. For each worker: its busy fraction (time running a job over the experiment's span,
first start to last finish) and its idle time while some run was still waiting to start (the goal: a
worker never idles while runs wait, beyond the moment a claim takes).

    .venv/bin/python bench/experiment_schedule.py [--workers 2 --variants 3 --seeds 2 --iters 120]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from data_common import REPO, start_data_service, write_corpus  # noqa: E402

from simtrain.experiment_store import ExperimentStore  # noqa: E402
from simtrain.experiments import ExperimentSpec, expand  # noqa: E402
from simtrain.process import stop_process  # noqa: E402
from simtrain.queue import JobQueue  # noqa: E402
from simtrain.redis_server import answering_redis  # noqa: E402


def experiment(address: str, variants: int, seeds: int, iters: int) -> ExperimentSpec:
    """Variants that differ in learning rate, so each run trains about as long as the others."""
    base = {
        "dataset": {"module": "text", "source": "corpus.txt"},
        "data_service": address,
        "model": {"n_layer": 2, "n_head": 2, "n_embd": 32},
        "training": {"max_iters": iters, "batch_size": 8, "block_size": 32, "eval_interval": iters // 2},
        "checks": {"overfit_steps": 10},
    }
    lrs = {f"lr{i}": {"training": {"learning_rate": 1e-3 * (i + 1)}} for i in range(variants)}
    return ExperimentSpec(name="schedule", base=base, variants=lrs, seeds=seeds)


def start_worker(name: str, env: dict[str, str], log: Path) -> subprocess.Popen:
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "trainer_service"],
            cwd=REPO,
            env=env | {"SIMTRAIN_WORKER_NAME": name},
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def schedule(records: list[dict], workers: list[str]) -> dict:
    """Busy fraction and idle-while-waiting per worker, from (worker, started_at, finished_at) of each run."""
    t0 = min(r["started_at"] for r in records)
    t1 = max(r["finished_at"] for r in records)
    span = t1 - t0
    out = {}
    for name in workers:
        mine = sorted((r["started_at"], r["finished_at"]) for r in records if r["worker"] == name)
        busy = sum(end - start for start, end in mine)
        # A run waits until it starts, so some run waits until the last one starts: a worker's free time
        # before then is idle while runs waited.
        last_start = max(r["started_at"] for r in records)
        free = zip([t0] + [end for _, end in mine], [start for start, _ in mine] + [t1], strict=True)
        idle_waiting = sum(max(0.0, min(b, last_start) - a) for a, b in free)
        out[name] = {
            "runs": len(mine),
            "busy_fraction": busy / span if span else None,
            "idle_while_runs_waited_s": idle_waiting,
        }
    return {"span_s": span, "workers": out}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--variants", type=int, default=3)
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--iters", type=int, default=120)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, answering_redis(os.environ.get("REDIS_URL")) as redis_url:
        root = Path(tmp)
        (root / "data").mkdir()
        write_corpus(root / "data" / "corpus.txt", 400_000)
        data, address = start_data_service(root / "data", root / "var")
        prefix = f"bench-schedule:{uuid.uuid4().hex[:8]}:"
        queue = JobQueue.from_url(redis_url, prefix)
        env = os.environ | {
            "REDIS_URL": redis_url,
            "SIMTRAIN_KEY_PREFIX": prefix,
            "SIMTRAIN_DATA_ROOT": str(root / "data"),
            "SIMTRAIN_STATE_DIR": str(root / "var"),
            "SIMTRAIN_DATA_SERVICE_ADDR": address,
            "SIMTRAIN_DEVICE": "cpu",
            "OMP_NUM_THREADS": "1",
        }
        names = [f"w{i + 1}" for i in range(args.workers)]
        workers = [start_worker(n, env, root / f"{n}.log") for n in names]
        try:
            spec = experiment(address, args.variants, args.seeds, args.iters)
            store = ExperimentStore(queue)
            experiment_id = store.create(spec, expand(spec))
            while (view := store.get(experiment_id)) is not None and view.status.value != "finished":
                time.sleep(0.2)
            records = []
            for _, job in store.jobs(experiment_id):
                assert job is not None and job.status.value == "succeeded", job
                records.append(
                    {"worker": job.worker, "started_at": job.started_at, "finished_at": job.finished_at}
                )
            result = schedule(records, names)
        finally:
            for worker in workers:
                stop_process(worker)
            stop_process(data)
            keys = list(queue.r.scan_iter(f"{prefix}*"))
            if keys:
                queue.r.delete(*keys)
    waited = max(w["idle_while_runs_waited_s"] for w in result["workers"].values())
    busy = [w["busy_fraction"] for w in result["workers"].values()]
    print(
        json.dumps(
            {
                "benchmark": "experiment_schedule",
                "runs": args.variants * args.seeds,
                **result,
                "min_busy_fraction": min(busy),
                "max_idle_while_runs_waited_s": waited,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
