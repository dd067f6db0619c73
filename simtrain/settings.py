"""All configuration, read from environment variables (prefix ``SIMTRAIN_``, plus ``REDIS_URL``)."""

from functools import lru_cache
from pathlib import Path

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """One settings class for every service, so a deployment sets one set of variables."""

    model_config = SettingsConfigDict(env_prefix="SIMTRAIN_", extra="ignore")

    redis_url: str = Field(
        default="redis://127.0.0.1:6379/0",
        validation_alias=AliasChoices("REDIS_URL", "SIMTRAIN_REDIS_URL"),
    )
    # Every Redis key starts with this, so several deployments (or tests) share one server.
    key_prefix: str = "simtrain:"

    data_root: Path = Path("data")
    state_dir: Path = Path("var")

    data_service_host: str = "127.0.0.1"
    data_service_port: int = 50051
    # Address trainers use when a job names no data service.
    data_service_addr: str = "127.0.0.1:50051"
    grpc_max_message_bytes: int = 64 * 1024 * 1024

    gateway_host: str = "127.0.0.1"
    gateway_port: int = 8000

    worker_name: str = ""
    # A job whose worker has not renewed its lease for this long is claimed by another worker.
    lease_ms: int = 30_000
    max_attempts: int = 3
    # Connection attempts (with exponential backoff) before a data service counts as unreachable.
    data_service_retries: int = 5
    data_service_backoff_s: float = 0.2
    device: str = "auto"
    # Trainers on the data service's host take batches through /dev/shm files instead of gRPC bytes
    # (simtrain/shm.py) where the service offers it; false always streams bytes.
    shm_batches: bool = True
    # How long a worker's writes for a job wait out an unreachable Redis (a restart) before giving the job up.
    redis_outage_s: float = 60.0
    # Memory limits on a job spec, checked at submit (422) and by the worker (simtrain/limits.py). The
    # defaults refuse only what no single machine could train; set them to what your trainers hold.
    max_model_params: int = 2_000_000_000
    max_activation_bytes: int = 256 * 2**30
    # MLflow tracking URI (an http(s) server, or file:///path with MLFLOW_ALLOW_FILE_STORE=true): set, every
    # job is tracked there as a run (trainer_service/tracking.py); unset, nothing is.
    mlflow_uri: str | None = None

    @property
    def prepared_dir(self) -> Path:
        return self.state_dir / "prepared"

    @property
    def jobs_dir(self) -> Path:
        return self.state_dir / "jobs"


@lru_cache
def get_settings() -> Settings:
    return Settings()
