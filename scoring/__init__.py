"""Loading the champion model and scoring feature frames: shared by CLI, API, jobs and Spark."""
