"""The base causal LM (prepared offline from a PyPI wheel, or any HF model) and batched chat generation."""
