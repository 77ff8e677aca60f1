"""cmsa_jax: Cross-Modal Self-Attention networks for referring segmentation in JAX/Flax NNX."""
