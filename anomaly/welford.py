"""Moved to federated.welford (the model's statistics; anomaly -> federated is the only direction).

Kept as an alias: keyed state of checkpoints taken before the move pickled the class under this name."""

from federated.welford import Welford

__all__ = ["Welford"]
