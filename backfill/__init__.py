"""One-time backfill of the anonymized output from raw ECG frames stored in InfluxDB (README, "Backfill")."""
