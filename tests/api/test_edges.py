"""Edge cases found by reviewing the API against its contract: each once broke, or nearly did."""

from __future__ import annotations

import threading
from datetime import UTC, datetime

from api_plant import BEARING, SPINDLE, plant_documents

from tvilling.app import build_platform
from tvilling.config import Settings


def test_client_time_goes_to_metadata_not_to_the_event_log(plant):
    c = plant
    r = c.patch("/api/twins/B2", json={"reported": {"temperature": 61.0}, "time": "2099-01-01T00:00:00Z"})
    body = r.json()
    assert body["metadata"]["reported"]["temperature"]["time"] == "2099-01-01T00:00:00Z"
    updated = datetime.fromisoformat(body["updated"].replace("Z", "+00:00"))
    assert abs((updated - datetime.now(UTC)).total_seconds()) < 60
    c.patch("/api/twins/B2", json={"reported": {"temperature": 62.0}})
    now = datetime.now(UTC).isoformat()
    assert c.get("/api/twins/B2", params={"at": now}).json()["reported"]["temperature"] == 62.0


def test_if_none_match_star_creates_only(plant):
    c = plant
    r = c.put("/api/twins/B1", json={"model": BEARING}, headers={"If-None-Match": "*"})
    assert r.status_code == 412 and r.json()["rule"] == "if_none_match"
    assert c.put("/api/twins/B77", json={"model": BEARING}, headers={"If-None-Match": "*"}).status_code == 201


def test_an_empty_patch_makes_no_revision(plant):
    c = plant
    rev = c.get("/api/twins/B1").json()["revision"]
    assert c.patch("/api/twins/B1", json={}).json()["revision"] == rev


def test_absurdly_deep_json_is_413_not_a_crash(plant):
    body = b'{"attributes": {"x": ' + b"[" * 5000 + b"]" * 5000 + b"}}"
    r = plant.patch("/api/twins/B1", content=body, headers={"content-type": "application/json"})
    assert r.status_code == 413
    assert plant.get("/health").status_code == 200


def test_oversized_page_limit_is_413(plant):
    assert plant.get("/api/events?limit=5000").status_code == 413
    r = plant.put("/api/twins/M1/relationships/" + "r" * 200, json={"name": "hasSpindle", "target": "B1"})
    assert r.status_code == 413 and "relationship id" in r.json()["detail"]


def test_concurrent_unconditional_patches_all_land(tmp_path):
    with build_platform(Settings(data_dir=tmp_path)) as p:
        p.models.add(plant_documents())
        p.twins.put("B1", {"model": BEARING})
        errors: list[Exception] = []

        def writer(n: int) -> None:
            for i in range(25):
                try:
                    p.twins.patch("B1", {"attributes": {f"w{n}": i}})
                except Exception as exc:
                    errors.append(exc)

        threads = [threading.Thread(target=writer, args=(n,)) for n in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []
        twin = p.twins.get("B1")
        assert twin.revision == 1 + 8 * 25
        assert twin.attributes == {f"w{n}": 24 for n in range(8)}


def test_a_decommission_by_another_process_holds_at_once(tmp_path):
    with build_platform(Settings(data_dir=tmp_path)) as server, build_platform(Settings(data_dir=tmp_path)) as cli:
        server.models.add(plant_documents())
        server.twins.put("S1", {"model": SPINDLE})  # the server has the model cached now
        cli.models.decommission(SPINDLE)
        import pytest

        from tvilling.core.errors import Invalid

        with pytest.raises(Invalid) as err:
            server.twins.put("S2", {"model": SPINDLE})
        assert err.value.fields["rule"] == "decommissioned"
