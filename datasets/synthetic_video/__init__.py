"""synthetic_video: procedural referring-video clips (cmsa_jax.data.synthetic_video)."""
