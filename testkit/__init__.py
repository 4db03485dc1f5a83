"""What tests and benchmarks share: the job run for real and the reference model it is checked against,
Flink REST and Kafka helpers, workloads, scorers and the chaos-resume driver.

Top of the import layers (tests/test_import_layers.py): it may import any package of the project, never
tests or benchmarks, and no shipped package, devstack or deployment tool imports it, so it never reaches an
image."""
