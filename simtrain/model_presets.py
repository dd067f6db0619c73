"""minGPT's named model sizes: model_type -> (n_layer, n_head, n_embd)."""

MODEL_PRESETS: dict[str, tuple[int, int, int]] = {
    # GPT-1
    "openai-gpt": (12, 12, 768),
    # GPT-2
    "gpt2": (12, 12, 768),
    "gpt2-medium": (24, 16, 1024),
    "gpt2-large": (36, 20, 1280),
    "gpt2-xl": (48, 25, 1600),
    # Gopher
    "gopher-44m": (8, 16, 512),
    # minGPT's own small ones
    "gpt-mini": (6, 6, 192),
    "gpt-micro": (4, 4, 128),
    "gpt-nano": (3, 3, 48),
}
