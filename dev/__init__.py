"""Local development: the one-process HTTP host of every function and the local stack."""
