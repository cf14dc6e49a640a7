"""Scoring: each task's metric (`metrics`, `sql`), how generated tokens become answers
(`postprocess`, the `postprocess.<name>` ops), how a task is decoded and scored (`scorer`), and
the evaluation loop validation and `ofac eval` share (`evaluation`)."""
