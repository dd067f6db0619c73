"""An experiment survives a worker SIGKILLed mid-run: the killed run is claimed again by another worker and
resumed from its checkpoint, every run ends once, and the comparison counts them all."""

from __future__ import annotations

import pytest

from simtrain.compare import compare
from simtrain.experiment_store import ExperimentStore, run_results
from simtrain.experiments import ExperimentSpec, expand
from simtrain.queue import GROUP, JobQueue
from tests.integration.trainer_support import DataService
from tests.reliability.support import Workers, long_spec, wait_until

pytestmark = pytest.mark.timeout(240)


def test_an_experiment_survives_a_worker_kill(
    data_service: DataService, job_queue: JobQueue, workers: Workers
):
    queue = JobQueue(job_queue.r, job_queue.prefix, lease_ms=1500)
    base = long_spec(data_service.address, max_iters=150).model_dump(mode="json")
    del base["training"]["seed"]
    spec = ExperimentSpec(
        name="kill", base=base, variants={"lr3": {}, "lr1": {"training": {"learning_rate": 1e-3}}}, seeds=1
    )
    store = ExperimentStore(queue)
    experiment_id = store.create(spec, expand(spec))
    first = workers.start("w1")
    wait_until(lambda: any(v and v.progress.step >= 60 for _, v in store.jobs(experiment_id)), 90, "step 60")
    first.kill()
    killed = next(r["job_id"] for r, v in store.jobs(experiment_id) if v and v.status.value == "running")

    workers.start("w2")
    view = wait_until(
        lambda: (v := store.get(experiment_id)) and v.status.value == "finished" and v, 150, "the experiment"
    )
    assert [r.status.value for r in view.runs] == ["succeeded", "succeeded"], workers.logs()
    record = queue.get(killed)
    assert record.attempts == 2 and record.worker == "w2"
    assert "resumes at step 50" in workers.by_name()["w2"].log()
    comparison = compare(run_results(queue, [(r.variant, r.seed, r.job_id) for r in view.runs]))
    assert comparison["complete"] and [v["n"] for v in comparison["variants"]] == [1, 1]
    assert comparison["common_step"] == 150
    assert queue.r.xpending(queue.stream, GROUP)["pending"] == 0
