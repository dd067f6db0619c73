"""A data module shipped as its own package: pip-installed, found through the entry point, and used."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import grpc

from simtrain.data.v1 import data_service_pb2 as pb
from simtrain.data.v1 import data_service_pb2_grpc as pb_grpc

REPO = Path(__file__).resolve().parents[2]
PLUGIN = REPO / "tests" / "plugins" / "simtrain_plugin_reverse"


def test_installed_plugin_is_offered_and_prepares(tmp_path: Path):
    # Built from a copy, so the build leaves nothing in the source tree.
    source = shutil.copytree(PLUGIN, tmp_path / "plugin")
    target = tmp_path / "site"
    install = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            "--target",
            str(target),
            str(source),
        ],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert install.returncode == 0, install.stderr
    assert list(target.glob("simtrain_plugin_reverse-*.dist-info"))

    data = tmp_path / "data"
    data.mkdir()
    (data / "words.txt").write_text("stressed\ndrawer\nlevel\n" * 20, encoding="utf-8")
    env = os.environ | {
        "PYTHONPATH": os.pathsep.join([str(target), str(REPO)]),
        "SIMTRAIN_DATA_SERVICE_PORT": "0",
        "SIMTRAIN_DATA_ROOT": str(data),
        "SIMTRAIN_STATE_DIR": str(tmp_path / "state"),
    }
    child = subprocess.Popen(
        [sys.executable, "-m", "data_service"], cwd=tmp_path, env=env, stdout=subprocess.PIPE, text=True
    )
    try:
        line = child.stdout.readline().strip()
        assert "listening on" in line, line
        with grpc.insecure_channel(line.rsplit(" ", 1)[1]) as channel:
            stub = pb_grpc.DataServiceStub(channel)
            names = [m.name for m in stub.ListModules(pb.ListModulesRequest(), timeout=30).modules]
            assert "reverse" in names and "text" in names
            info = stub.PrepareDataset(
                pb.PrepareDatasetRequest(module="reverse", source="words.txt", packing="pairs"), timeout=60
            )
            assert info.module == "reverse" and sum(s.num_examples for s in info.splits) == 60
            assert '"lines": 60' in info.stats_json
    finally:
        child.terminate()
        child.wait(timeout=30)
