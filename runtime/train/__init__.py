"""Training: the recipe (`recipe.TrainingRun`: setup, train, validate, save, cleanup), one
update's arithmetic (`update`), the schedule, EMA, validation, typed options, processes
(`distributed`), the `ofac run` front (`launch`), its display and plots."""
