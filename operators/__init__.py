"""Thin Flink functions: each adapts a pure module (contract, privacy, connectors) to PyFlink."""
