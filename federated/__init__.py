"""Federated learning of the per-device heart-rate models (pure Python + numpy, no pyflink)."""
