"""Local development and test infrastructure (not used by the deployed job): the local Kafka/InfluxDB
stack, the standalone Flink cluster helper, the ECG simulator and the sample-data extraction."""
