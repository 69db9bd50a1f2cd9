"""Entry point for ``spark-submit``: the botfilter CLI running as the Spark driver.

    spark-submit --master yarn --archives botfilter-env.tar.gz#env \\
        --conf spark.pyspark.python=./env/bin/python \\
        botfilter/spark_submit.py score --engine spark --data s3a://bucket/day/ --out s3a://b/scores.parquet

The Spark session the commands build picks up the launcher's master and ``--conf`` settings
(:func:`jobs.spark.engine.spark_session` only fills in what was not set).
"""

from __future__ import annotations

from botfilter.cli import app


def main() -> None:
    """Run the botfilter CLI with the submitted arguments."""
    app()


if __name__ == "__main__":
    main()
