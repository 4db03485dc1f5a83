"""A keyed Java operator of the project jar between a `key_by` and the Python function after it: one place for how
its output is keyed again without a shuffle (WindowCloser, FrameBlocks)."""

from __future__ import annotations

from typing import Any

from pyflink.datastream import DataStream, KeyedStream
from pyflink.java_gateway import get_gateway


def through_keyed_java(keyed: KeyedStream, operator: Any, *, name: str, uid: str, output_type: Any,
                       element_type: Any) -> KeyedStream:
    """`keyed` (keyed on the Java side by field 0, as DataStream.key_by or flink_jobs.cardio_branch.keyed_by_device
    build it) through `operator` (a Java OneInputStreamOperator instance; its records of Java type `output_type`),
    then keyed the same way again without a shuffle, so that the function applied next runs chained right after it,
    on the same keys; `element_type`: what that function receives (the Python type of the records' field 1)."""
    gateway = get_gateway()
    j_keyed = keyed._j_data_stream
    out = DataStream(j_keyed.transform(name, output_type, operator)).uid(uid)
    j_rekeyed = gateway.jvm.org.apache.flink.streaming.api.datastream.DataStreamUtils.reinterpretAsKeyedStream(
        out._j_data_stream, gateway.jvm.KeyByKeySelector(), j_keyed.getKeyType())
    return KeyedStream(j_rekeyed, element_type, out)
