"""simtrain: shared pieces of the simulated training environment (schema, queue, settings, stubs)."""
