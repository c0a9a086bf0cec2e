"""Training, evaluation, prediction, export and checkpoints."""
