"""What a run leaves on disk: the run directory's files (`rundir`), checkpoints (`checkpoint`)
and the atomic JSON writes and errors both use (`files`)."""
