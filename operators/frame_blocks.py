"""A device's frames in blocks: connectors/java FrameBlocks between the cardio job's `key_by` and its detector, so
that the detector runs once per block of frames instead of once per 1 s frame (issue 24; anomaly.device
`frame_blocks` is the rule, the reference model's too)."""

from __future__ import annotations

from pyflink.common import Types
from pyflink.datastream import KeyedStream

from connectors.jars import project_class
from operators.keyed_java import through_keyed_java

FRAME_BLOCKS_CLASS = "io.ecgflinkanon.connectors.FrameBlocks"
# What FrameBlocks emits: Row(pid, pickle of (pid, [(ts_ms, fs, samples), ...])) for a block, Row(pid, payload) for
# a record passed through (operators.records.pass_through_row); keyed, the detector gets the pickled field.
BLOCKS = Types.ROW([Types.STRING(), Types.PICKLED_BYTE_ARRAY()])


def with_frame_blocks(keyed: KeyedStream, *, block_ms: int, name: str, uid: str) -> KeyedStream:
    """`keyed` (Row(pid, ts_ms, fs, payload) of type operators.records.DEVICE_FRAME, keyed by the pid on the Java
    side) through FrameBlocks, then keyed the same way again without a shuffle. FrameBlocks holds the forwarded
    watermark `block_ms` behind its input, so nothing it emits is behind a watermark it has forwarded."""
    return through_keyed_java(keyed, project_class(FRAME_BLOCKS_CLASS)(block_ms), name=name, uid=uid,
                              output_type=BLOCKS.get_java_type_info(), element_type=Types.PICKLED_BYTE_ARRAY())
