"""Generation: GenerationConfig, logits processors, search strategies, streamers."""
