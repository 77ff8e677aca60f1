"""What only the TFDS builders in `datasets/` use: the record features, image and video
readers, the restricted unpickler and the manual-file checks."""
