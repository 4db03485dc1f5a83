"""Raw ECG frames stored in InfluxDB: the schema, and readers of a time range in slices.

Schema (README, "Backfill"): one point per input message, as the Kafka record it came in as:

    measurement  INFLUX_INPUT_MEASUREMENT (default ``ecg_raw``)
    tag          device_id  the record key (the device id, UTF-8); absent for a record without key
    field        frame      the message exactly as received (a string: the frame's JSON text)
    time         the record timestamp, milliseconds (the frame's ``ts`` for a device that follows the contract)

Other tags and fields are ignored. The message is kept whole, not split into fields, so it is read back byte for
byte: an invalid frame stays invalid (and reaches the dead-letter topic with its reason), a valid one parses to
the same frame. Limits of the schema: the message must be UTF-8 (InfluxDB strings are), at most 64 KiB (InfluxDB
1.x's string limit; a contract frame of 4096 samples can exceed it), and two messages of one device with the same
timestamp are one point (InfluxDB keeps the last).
"""

from __future__ import annotations

import base64
import json
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, ClassVar

from connectors.config import Settings, options_from_settings
from connectors.influxdb import InfluxOptions

FRAME_FIELD = "frame"
DEVICE_TAG = "device_id"
NS_PER_MS = 1_000_000


@dataclass(frozen=True)
class RawRecord:
    """One input message as Kafka carried it: key, value, record timestamp."""

    key: bytes | None
    value: bytes
    timestamp_ms: int


@dataclass(frozen=True)
class InfluxInputOptions:
    """The INFLUX_INPUT_* settings (field ``db`` = ``INFLUX_INPUT_DB``)."""

    SETTINGS_PREFIX: ClassVar[str] = "influx_input_"

    db: str
    bucket: str
    measurement: str
    slice_seconds: int

    @classmethod
    def from_settings(cls, settings: Settings) -> InfluxInputOptions:
        return options_from_settings(cls, settings)


class InfluxReadError(RuntimeError):
    pass


def _escape_key(text: str) -> str:
    return text.replace("\\", "\\\\").replace(",", "\\,").replace("=", "\\=").replace(" ", "\\ ")


def raw_point_line(measurement: str, record: RawRecord) -> str:
    """The line-protocol point of one input message (precision ns), as an archiver of the input writes it."""
    text = record.value.decode("utf-8")  # not UTF-8: not storable in this schema
    value = text.replace("\\", "\\\\").replace('"', '\\"')
    tags = "" if record.key is None else f",{DEVICE_TAG}={_escape_key(record.key.decode('utf-8'))}"
    return f'{_escape_key(measurement)}{tags} {FRAME_FIELD}="{value}" {record.timestamp_ms * NS_PER_MS}'


def time_slices(start_ms: int, stop_ms: int, slice_seconds: int) -> Iterator[tuple[int, int]]:
    """[start, stop) cut into consecutive half-open slices of at most ``slice_seconds``."""
    step = slice_seconds * 1000
    for begin in range(start_ms, stop_ms, step):
        yield begin, min(begin + step, stop_ms)


def _record(device_id: Any, frame: Any, timestamp_ms: int) -> RawRecord:
    if not isinstance(frame, str):
        raise InfluxReadError(f"a point at {timestamp_ms} ms has no string field {FRAME_FIELD!r}")
    key = None if device_id in (None, "") else str(device_id).encode("utf-8")
    return RawRecord(key, frame.encode("utf-8"), timestamp_ms)


def _ident(name: str) -> str:
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


@dataclass
class V1RawReader:
    """InfluxQL over InfluxDB 1.x ``/query`` (tested against the local influxd)."""

    url: str
    db: str
    measurement: str
    username: str = ""
    password: str = field(default="", repr=False)

    def read(self, start_ms: int, stop_ms: int) -> list[RawRecord]:
        """The messages of [start, stop) in time order (InfluxQL merges the devices' series by time)."""
        query = (f"SELECT {_ident(FRAME_FIELD)}, {_ident(DEVICE_TAG)} FROM {_ident(self.measurement)} "
                 f"WHERE time >= {start_ms * NS_PER_MS} AND time < {stop_ms * NS_PER_MS} ORDER BY time ASC")
        params = urllib.parse.urlencode({"db": self.db, "q": query, "epoch": "ns"})
        headers = {"Content-Type": "application/x-www-form-urlencoded"}
        if self.username:
            token = base64.b64encode(f"{self.username}:{self.password}".encode()).decode()
            headers["Authorization"] = f"Basic {token}"
        request = urllib.request.Request(self.url.rstrip("/") + "/query", data=params.encode(), headers=headers,
                                         method="POST")
        try:
            with urllib.request.urlopen(request, timeout=120) as response:
                document = json.loads(response.read())
        except urllib.error.HTTPError as error:
            raise InfluxReadError(f"InfluxDB v1 query failed ({error.code}): "
                                  f"{error.read().decode('utf-8', 'replace')[:300]}") from None
        if "error" in document:
            raise InfluxReadError(f"InfluxDB v1 query failed: {document['error']}")
        records: list[RawRecord] = []
        for result in document.get("results", []):
            if "error" in result:
                raise InfluxReadError(f"InfluxDB v1 query failed: {result['error']}")
            for series in result.get("series", []) or []:
                # max-row-limit cut the answer: reading on would silently lose frames.
                if series.get("partial") or result.get("partial"):
                    raise InfluxReadError(f"InfluxDB returned a partial result for [{start_ms}, {stop_ms}) ms: "
                                          "lower INFLUX_INPUT_SLICE_SECONDS (or raise the server's max-row-limit)")
                columns = series["columns"]
                at_time, at_frame, at_device = (columns.index(c) for c in ("time", FRAME_FIELD, DEVICE_TAG))
                for row in series.get("values", []) or []:
                    records.append(_record(row[at_device], row[at_frame], int(row[at_time]) // NS_PER_MS))
        return records


@dataclass
class V2RawReader:
    """Flux over InfluxDB 2.x ``/api/v2/query``. UNTESTED: there is no InfluxDB 2.x on the test machine."""

    url: str
    token: str = field(repr=False)
    org: str
    bucket: str
    measurement: str

    def read(self, start_ms: int, stop_ms: int) -> list[RawRecord]:
        from influxdb_client import InfluxDBClient

        flux = (f"from(bucket: {json.dumps(self.bucket)})"
                f" |> range(start: time(v: {start_ms * NS_PER_MS}), stop: time(v: {stop_ms * NS_PER_MS}))"
                f" |> filter(fn: (r) => r._measurement == {json.dumps(self.measurement)}"
                f" and r._field == {json.dumps(FRAME_FIELD)})"
                ' |> group() |> sort(columns: ["_time"])')
        epoch = datetime(1970, 1, 1, tzinfo=UTC)
        with InfluxDBClient(url=self.url, token=self.token, org=self.org, timeout=120_000) as client:
            records = []
            for row in client.query_api().query_stream(flux, org=self.org):
                moment = row.get_time()
                # datetime keeps microseconds: the record timestamp (ms) survives.
                timestamp_ms = (moment - epoch) // (datetime.resolution * 1000)
                records.append(_record(row.values.get(DEVICE_TAG), row.get_value(), timestamp_ms))
            return records


RawReader = V1RawReader | V2RawReader


def make_reader(influx: InfluxOptions, options: InfluxInputOptions) -> RawReader:
    if influx.transport == "v1":
        if not options.db:
            raise ValueError("INFLUX_INPUT_DB is required with INFLUX_TRANSPORT=v1")
        return V1RawReader(influx.url, options.db, options.measurement, influx.username, influx.password)
    if not options.bucket:
        raise ValueError("INFLUX_INPUT_BUCKET is required with INFLUX_TRANSPORT=v2")
    return V2RawReader(influx.url, influx.token, influx.org, options.bucket, options.measurement)
