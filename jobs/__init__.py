"""The batch job: settings, 30-day retroactive metrics recompute, metrics store, Spark engine."""
