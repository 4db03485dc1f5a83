"""Production I/O of the deployed job: settings, Kafka source/sinks, InfluxDB and CSV writers,
checkpoint lookup, connector jars and the Java deserializer."""
