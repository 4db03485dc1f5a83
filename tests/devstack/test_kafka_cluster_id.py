"""devstack.stack._kafka_cluster_id: an id the storage tool accepts (a rehearsal failed on one starting with "-")."""

from __future__ import annotations

import base64
from unittest import mock

from devstack import stack


def test_an_id_never_starts_with_a_dash() -> None:
    dash_first = b"\xf8" + bytes(15)  # URL-safe base64 "-A..."
    assert base64.urlsafe_b64encode(dash_first).decode().startswith("-")
    with mock.patch.object(stack.os, "urandom", side_effect=[dash_first, bytes(16)]):
        assert stack._kafka_cluster_id() == "AAAAAAAAAAAAAAAAAAAAAA"


def test_ids_are_22_url_safe_characters() -> None:
    ids = {stack._kafka_cluster_id() for _ in range(2000)}
    assert len(ids) == 2000
    assert all(len(i) == 22 and not i.startswith("-") and set(i) <= set(
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_") for i in ids)
