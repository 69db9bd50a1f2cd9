"""The batch job on Apache Spark: reading and validating tables, scoring, the metric spec compiled to Spark."""
