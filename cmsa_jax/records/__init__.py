"""What only the TFDS builders in `datasets/` use: the record features, the
annotation parsers, the restricted unpickler and the manual-file checks (image and
frame reading, shared with training and prediction, is `cmsa_jax.media`)."""
