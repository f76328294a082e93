"""llmaccel."""
