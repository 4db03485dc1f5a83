"""When keyed tumbling windows close: connectors/java WindowCloser between a `key_by` and the Python function
that owns the windows, so that no window depends on a timer registered by Python code (PyFlink can leave such a
timer out of the checkpoint that ends its bundle: issue 19 item 5). See WindowCloser for the records it sends."""

from __future__ import annotations

from pyflink.datastream import KeyedStream

from connectors.jars import project_class
from operators.keyed_java import through_keyed_java

WINDOW_CLOSER_CLASS = "io.ecgflinkanon.connectors.WindowCloser"
# The close of a text stream's window (textRecords): this prefix and the close time in ms.
TEXT_CLOSE_PREFIX = "window-close:"  # WindowCloser.java writes the same


def with_window_closes(keyed: KeyedStream, *, name: str, uid: str, window_ms: int, lateness_ms: int = 0,
                       pace_ms: int = 0, text_records: bool = False) -> KeyedStream:
    """`keyed` (as DataStream.key_by builds it) through WindowCloser, then keyed the same way again without a
    shuffle, so that the function applied next runs chained right after it, on the same keys.

    Pickled records (`text_records` False): a close is a Python int (the close time), a late record a 1-tuple
    of its pickled bytes. Text records: a close is TEXT_CLOSE_PREFIX + close time, a late record comes on time
    in the window of the watermark."""
    closer = project_class(WINDOW_CLOSER_CLASS)(window_ms, lateness_ms, pace_ms, text_records)
    return through_keyed_java(keyed, closer, name=name, uid=uid, output_type=keyed._j_data_stream.getType(),
                              element_type=keyed._original_data_type_info)


def text_close_time(value: str) -> int | None:
    """The close time of a text stream's close record, None for any other record."""
    return int(value[len(TEXT_CLOSE_PREFIX):]) if value.startswith(TEXT_CLOSE_PREFIX) else None
