"""The simtrain gateway: the REST face of the job queue (FastAPI)."""
