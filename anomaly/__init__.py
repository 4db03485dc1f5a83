"""Heart-rate anomaly detection per device (pure Python + numpy, no pyflink)."""
