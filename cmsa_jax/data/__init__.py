"""Dataset features, readers and safety helpers shared by the TFDS builders in `datasets/`."""
