"""The training run behind train.py: options, builders, the loop, checkpoints, signals and the summary."""
