"""The integration tests' default ``gateway`` and ``worker``; a module with fixtures of its own keeps them."""

from tests.integration.worker_fixtures import gateway, worker

__all__ = ["gateway", "worker"]
