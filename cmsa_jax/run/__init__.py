"""The run loop: train state and optimizer, checkpoints, train, evaluate, predict, metrics,
DenseCRF, writers."""
