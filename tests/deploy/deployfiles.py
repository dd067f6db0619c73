"""The deploy files: where they are, and a small Dockerfile parser. Helpers for tests/deploy."""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
COMPOSE_FILE = DEPLOY / "docker-compose.yml"
COMPOSE_CPU_FILE = DEPLOY / "docker-compose.cpu.yml"
DOCKERFILE = DEPLOY / "Dockerfile"
K8S = DEPLOY / "k8s"
KUSTOMIZATIONS = ["base", "overlays/external-redis", "multinode"]
SERVICE_TARGETS = ["gateway", "data-service", "trainer", "generate-server"]


def run(cmd: list[str | Path], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=60, **kwargs)


# ---- the Dockerfile --------------------------------------------------------------------------------


@dataclass
class Stage:
    name: str
    base: str
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, keyword: str) -> list[str]:
        return [arg for kw, arg in self.instructions if kw == keyword]

    def last(self, keyword: str) -> str | None:
        found = self.all(keyword)
        return found[-1] if found else None


@dataclass
class Dockerfile:
    global_args: dict[str, str]
    stages: dict[str, Stage]

    def chain(self, name: str) -> list[Stage]:
        """The stage and the stages it is built FROM, nearest first."""
        out = []
        while name in self.stages:
            out.append(self.stages[name])
            name = self.stages[name].base
        return out

    def effective(self, name: str, keyword: str) -> str | None:
        """The value a target inherits for USER, CMD, HEALTHCHECK…: the nearest stage that sets it."""
        for stage in self.chain(name):
            value = stage.last(keyword)
            if value is not None:
                return value
        return None

    def args(self, name: str) -> dict[str, str]:
        """ARG defaults declared in a stage."""
        return dict(_arg(a) for a in self.stages[name].all("ARG"))


def _arg(text: str) -> tuple[str, str]:
    key, _, value = text.partition("=")
    return key.strip(), value.strip().strip('"')


def parse_dockerfile(path: Path) -> Dockerfile:
    """Instructions per stage, continuation lines joined and comments dropped."""
    logical: list[str] = []
    pending = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        logical.append(pending + line)
        pending = ""
    global_args: dict[str, str] = {}
    stages: dict[str, Stage] = {}
    current: Stage | None = None
    for line in logical:
        keyword, _, rest = line.partition(" ")
        keyword, rest = keyword.upper(), re.sub(r"\s+", " ", rest.strip())
        if keyword == "FROM":
            match = re.fullmatch(r"(\S+) AS (\S+)", rest, flags=re.IGNORECASE)
            assert match, f"every stage is named: FROM {rest}"
            current = Stage(name=match.group(2), base=match.group(1))
            stages[current.name] = current
        elif current is None:
            assert keyword == "ARG", f"only ARG comes before the first FROM, not {keyword}"
            key, value = _arg(rest)
            global_args[key] = value
        else:
            current.instructions.append((keyword, rest))
    return Dockerfile(global_args, stages)
