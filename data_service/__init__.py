"""The gRPC data service: data modules, tokenizers, the prepared-dataset store and batch sampling."""
