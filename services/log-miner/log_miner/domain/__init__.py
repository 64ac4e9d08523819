"""Rules of the log miner, no I/O: what a run was (taxonomy), what it teaches (examples),
what an example must satisfy (validation), how a dataset is assembled, when to retrain."""
