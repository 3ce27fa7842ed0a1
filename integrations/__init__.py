"""Adapters for model runtimes (Hugging Face, vLLM); each imports its framework lazily."""
