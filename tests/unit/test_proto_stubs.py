"""The committed stubs are what protoc makes from the committed .proto (run `make proto` after editing)."""

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PROTO = "simtrain/data/v1/data_service.proto"
STUBS = ("data_service_pb2.py", "data_service_pb2.pyi", "data_service_pb2_grpc.py")


def test_stubs_match_the_proto(tmp_path: Path):
    out = f"{tmp_path}"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "grpc_tools.protoc",
            "-Iproto",
            f"--python_out={out}",
            f"--pyi_out={out}",
            f"--grpc_python_out={out}",
            f"proto/{PROTO}",
        ],
        cwd=REPO,
        check=True,
    )
    for name in STUBS:
        fresh = (tmp_path / "simtrain/data/v1" / name).read_bytes()
        committed = (REPO / "simtrain/data/v1" / name).read_bytes()
        assert fresh == committed, f"simtrain/data/v1/{name} is stale: regenerate it with `make proto`"
