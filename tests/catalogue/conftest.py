"""What the catalogue tests share: the broken modules installed as a plugin, a data service, a job runner.

The catalogue package is pip-installed into a temporary directory exactly as ``tests/plugins`` installs its
example plugin, then put on ``sys.path``, so the data service started here finds its modules through the
``simtrain.data_modules`` entry points like any other installed module.
"""

from __future__ import annotations

import random
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from data_service.server import serve
from simtrain.cli import DEMO_CORPUS
from simtrain.jobs import JobSpec
from simtrain.queue import JobQueue
from simtrain.settings import Settings
from tests.catalogue.misbehaving import serve_misbehaving
from trainer_service.job_runner import JobRun

PLUGIN = Path(__file__).resolve().parent / "simtrain_catalogue"
# Real text nobody here wrote: the licence texts a Debian system carries, read where they lie (not committed).
SYSTEM_LICENCES = Path("/usr/share/common-licenses")
LICENCES = "licences"
# Small enough to train in a few seconds on one CPU core, big enough to learn the good datasets.
MODEL = {"n_layer": 2, "n_head": 2, "n_embd": 32, "embd_pdrop": 0.0, "resid_pdrop": 0.0, "attn_pdrop": 0.0}
TRAINING = {
    "max_iters": 200,
    "batch_size": 16,
    "block_size": 64,
    "learning_rate": 3e-3,
    "eval_interval": 100,
    "eval_iters": 4,
    "seed": 1,
}


@dataclass
class Outcome:
    report: dict[str, Any]
    error: str | None  # the job's error when it failed (a report is written all the same)

    def check(self, name: str) -> dict[str, Any]:
        found = next((c for c in self.report["checks"] if c["name"] == name), None)
        assert found is not None, f"no check {name!r}: {[c['name'] for c in self.report['checks']]}"
        return found

    def verdicts(self, *verdicts: str) -> set[str]:
        return {c["name"] for c in self.report["checks"] if c["verdict"] in verdicts}


@dataclass
class Catalogue:
    settings: Settings
    queue: JobQueue
    address: str

    def run(self, dataset: dict[str, Any], corruption: str | None = None, **training: Any) -> Outcome:
        """Run one job to its end in this process; ``corruption`` streams through a misbehaving service."""
        address, server = self.address, None
        if corruption:
            server, address = serve_misbehaving(self.settings, corruption)
        spec = JobSpec.model_validate(
            {"dataset": dataset, "data_service": address, "model": MODEL, "training": TRAINING | training}
        )
        job = self.queue.submit(spec)
        try:
            report, error = JobRun(job, self.settings, self.queue, lambda: False).run(), None
        except Exception as e:  # a failed job: its report is in the queue
            report, error = self.queue.report(job.id), str(e)
        finally:
            if server is not None:
                server.stop(None)
        assert report is not None, f"no report; the job failed with {error}"
        return Outcome(report, error)


@pytest.fixture(scope="session")
def catalogue_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The catalogue plugin, pip-installed into a directory of its own."""
    root = tmp_path_factory.mktemp("catalogue-plugin")
    source = shutil.copytree(PLUGIN, root / "plugin")
    target = root / "site"
    command = [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation"]
    command += ["--no-index", "--target", str(target), str(source)]
    install = subprocess.run(command, capture_output=True, text=True, timeout=180)
    assert install.returncode == 0, install.stderr
    return target


def plural_deck(path: Path) -> Path:
    """A generated Anki deck (genanki, collection.anki2): made-up nouns and their plurals, with HTML."""
    import genanki

    rng = random.Random(11)
    words = sorted(
        {"".join(rng.choice("bdfgklmnprstvz") + rng.choice("aeiou") for _ in range(3)) for _ in range(600)}
    )
    deck = genanki.Deck(2_100_000, "Plurals")
    for i, word in enumerate(words):
        front = f"Plural of <b>{word}</b>?" if i % 2 else f"<div>Plural&nbsp;of <i>{word}</i>?</div>"
        deck.add_note(genanki.Note(model=genanki.BASIC_MODEL, fields=[front, f"{word}s"], guid=f"p{i}"))
    genanki.Package([deck]).write_to_file(str(path))
    return path


def pictures_deck(path: Path) -> Path:
    """A generated Anki deck whose fronts mix text and an image: only the text can be trained on."""
    import genanki

    rng = random.Random(37)
    deck = genanki.Deck(2_100_001, "Pictures")
    for i in range(400):
        word = "".join(rng.choice("bdfgklmnprstvz") + rng.choice("aeiou") for _ in range(3))
        front = f'What is shown? <img src="picture{i}.png"> ({word})'
        deck.add_note(genanki.Note(model=genanki.BASIC_MODEL, fields=[front, word.upper()], guid=f"m{i}"))
    genanki.Package([deck]).write_to_file(str(path))
    return path


def licence_texts(directory: Path) -> Path:
    """The system's licence texts as a directory of .txt files (each once), for the text module."""
    directory.mkdir()
    for file in sorted({f.resolve() for f in SYSTEM_LICENCES.iterdir() if f.is_file()}):
        shutil.copyfile(file, directory / f"{file.name}.txt")
    return directory


@pytest.fixture(scope="module")
def catalogue(
    catalogue_site: Path, tmp_path_factory: pytest.TempPathFactory, redis_url: str
) -> Iterator[Catalogue]:
    root = tmp_path_factory.mktemp("catalogue")
    (root / "data").mkdir()
    shutil.copyfile(DEMO_CORPUS, root / "data" / "tiny.txt")
    plural_deck(root / "data" / "plurals.apkg")
    pictures_deck(root / "data" / "pictures.apkg")
    if SYSTEM_LICENCES.is_dir():
        licence_texts(root / "data" / LICENCES)
    settings = Settings(
        data_root=root / "data",
        state_dir=root / "var",
        redis_url=redis_url,
        key_prefix=f"simtrain-test:{uuid.uuid4().hex[:12]}:",
    )
    with pytest.MonkeyPatch.context() as mp:
        mp.syspath_prepend(str(catalogue_site))
        server, port = serve(settings, port=0)
        queue = JobQueue.from_url(settings.redis_url, settings.key_prefix, settings.lease_ms)
        try:
            yield Catalogue(settings, queue, f"127.0.0.1:{port}")
        finally:
            server.stop(None)
            keys = list(queue.r.scan_iter(f"{settings.key_prefix}*"))
            if keys:
                queue.r.delete(*keys)
