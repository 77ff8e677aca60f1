"""Command-line tools: `python -m cmsa_jax.tools.<name>`."""
