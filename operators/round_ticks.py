"""Round ticks for the FedAvg aggregator: connectors/java RoundTicks chained into its input (see
operators.anomaly_models.AggregateModels for why)."""

from __future__ import annotations

from pyflink.datastream import DataStream

from connectors.jars import project_class
from federated.rounds import RoundClock

TICKS_CLASS = "io.ecgflinkanon.connectors.RoundTicks"


def with_round_ticks(signals: DataStream, clock: RoundClock) -> DataStream:
    """`signals` (pickled Python objects) with a tick (a pickled int) behind every watermark that makes a
    round closable and behind the first watermark after a (re)start."""
    operator_class = project_class(TICKS_CLASS)
    j_stream = signals._j_data_stream
    return DataStream(j_stream.transform("round ticks", j_stream.getType(),
                                         operator_class(clock.update_ms, clock.grace_ms)))
