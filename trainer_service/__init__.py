"""The trainer service: a minGPT-compatible model and trainer fed by the gRPC data stream."""
