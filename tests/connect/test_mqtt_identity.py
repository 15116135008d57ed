"""The server's MQTT identity: stable per data directory, held by one process at a time."""

from __future__ import annotations

import pytest

from tvilling.connect.mqtt.identity import FILE, claim_identity
from tvilling.core.errors import Conflict, Invalid


def test_the_identity_is_made_once_and_kept(tmp_path):
    with claim_identity(tmp_path) as first:
        ingest, commands = first.ingest_client_id, first.commands_client_id
    assert ingest.startswith("tvilling-ingest-") and commands.startswith("tvilling-commands-")
    assert (tmp_path / FILE).read_text().strip() in ingest
    with claim_identity(tmp_path) as again:
        assert (again.ingest_client_id, again.commands_client_id) == (ingest, commands)
    with claim_identity(tmp_path / "other") as other:
        assert other.ingest_client_id != ingest


def test_a_second_process_on_the_same_data_dir_is_refused_with_what_to_do(tmp_path):
    held = claim_identity(tmp_path)
    try:
        with pytest.raises(Conflict, match="its own --data-dir"):
            claim_identity(tmp_path)
    finally:
        held.release()
    claim_identity(tmp_path).release()  # free again once released


def test_an_explicit_client_id_overrides_and_is_checked(tmp_path):
    with claim_identity(tmp_path, "line-3-ingest") as ident:
        assert (ident.ingest_client_id, ident.commands_client_id) == ("line-3-ingest", "line-3-ingest-commands")
    with pytest.raises(Invalid, match="client id"):
        claim_identity(tmp_path, "bad id/with#wildcards")


def test_a_damaged_identity_file_is_reported(tmp_path):
    (tmp_path / FILE).write_text("not an id!\n")
    with pytest.raises(Invalid, match="delete the file"):
        claim_identity(tmp_path)
