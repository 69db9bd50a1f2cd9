"""Model training, calibration, thresholds, evaluation and the promotion gate (MLflow)."""
