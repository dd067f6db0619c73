"""`simtrain jobs`: an experiment run's filing tags stay out of the table (its name says the same)."""

from __future__ import annotations

from typing import Any

from rich.console import Console

from simtrain.cli.jobs import jobs_table


def job(name: str | None, tags: list[str]) -> dict[str, Any]:
    spec = {
        "name": name,
        "tags": tags,
        "model": {"model_type": "gpt-nano"},
        "dataset": {"module": "text", "source": "notes.txt"},
    }
    return {
        "id": "0123456789abcdef0123456789abcdef",
        "spec": spec,
        "status": "succeeded",
        "verdict": "fit",
        "progress": {"step": 300, "max_iters": 300},
        "metrics": {"val/loss": 1.4},
        "created_at": 0.0,
    }


def shown(rows: list[dict[str, Any]], width: int) -> list[str]:
    console = Console(width=width, record=True)
    console.print(jobs_table(rows))
    return console.export_text().splitlines()


def test_an_experiment_runs_filing_tags_stay_out_of_the_table() -> None:
    run = job("tokenizer study / byte / seed 1", ["mine", "experiment:tokenizer-study", "variant:byte"])
    lines = shown([run], 120)
    assert lines[1].split()[0] == "01234567"
    text = " ".join(" ".join(lines).split())
    assert "tokenizer study / byte / seed 1 #mine" in text
    assert "experiment:" not in text and "variant:" not in text
