"""The IR executor: a task's program run on one row (`run.TaskRunner`), producing a `Sample`
(`sample`): encoder inputs and the output head's target (`targets`)."""
