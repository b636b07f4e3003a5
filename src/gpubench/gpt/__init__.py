"""A GPT-style decoder to train for a benchmark: configs with named sizes, the model,
FP8 linears, and one training step."""
