"""synthetic_ref: procedural referring-segmentation scenes (cmsa_jax.data.synthetic)."""
