from __future__ import annotations

import time

from api_plant import BEARING, plant_documents


def setup(client):
    assert client.post("/api/models", json=plant_documents()).status_code == 201
    assert client.put("/api/twins/B1", json={"model": BEARING}).status_code == 201


def test_envelope_and_columnar_batches_reach_the_twin(client):
    setup(client)
    batch = [
        {"twin": "B1", "ts": "2026-11-01T12:00:00Z", "values": {"temperature": 70.0}, "source": "gw-1", "id": "a"},
        {"twin": "B1", "ts": 1793534401000, "values": {"temperature": 71.0}},
        {"twin": "B1", "ts": [1793534402000, 1793534403000, 1793534404000],
         "values": {"temperature": [72.0, None, 73.0], "vibration": [1.0, 1.1, 1.2]}},
    ]
    r = client.post("/api/ingest", json=batch)
    assert r.status_code == 200, r.text
    assert r.json() == {"accepted": 7, "rejected": 0, "duplicates": 0, "flagged": 0, "rejections": []}
    twin = client.get("/api/twins/B1").json()
    assert twin["reported"] == {"temperature": 73.0, "vibration": 1.2}
    assert twin["metadata"]["reported"]["temperature"]["time"] == "2026-11-01T12:00:04Z"
    again = client.post("/api/ingest", json=batch[0]).json()
    assert again["duplicates"] == 1 and again["accepted"] == 0


def test_rejections_are_listed_with_reason_and_payload(client):
    setup(client)
    r = client.post("/api/ingest", json=[
        {"twin": "B1", "ts": "not a time", "values": {"temperature": 1.0}},
        {"twin": "B1", "ts": 1793534400000, "values": {"nonsense": 1.0}},
        {"twin": "nope", "ts": 1793534400000, "values": {"temperature": 1.0}},
        {"twin": "B1", "ts": [1793534400000], "values": {"temperature": [1.0, 2.0]}},
    ])
    assert r.status_code == 200
    assert r.json()["rejected"] == 4 and r.json()["accepted"] == 0
    # the answer says why, per rule, in the same words as the dead letters
    why = {e["rule"]: e for e in r.json()["rejections"]}
    assert sorted(why) == ["length", "ts", "unknown_property", "unknown_twin"]
    assert all(e["count"] == 1 and len(e["reasons"]) == 1 for e in why.values())
    assert "nonsense" in why["unknown_property"]["reasons"][0] and "nope" in why["unknown_twin"]["reasons"][0]
    letters = client.get("/api/dead-letters").json()["items"]
    assert sorted(d["rule"] for d in letters) == ["length", "ts", "unknown_property", "unknown_twin"]
    bad_ts = next(d for d in letters if d["rule"] == "ts")
    assert "not a time" in bad_ts["payload"] and bad_ts["transport"] == "http"
    only = client.get("/api/dead-letters?rule=unknown_twin").json()["items"]
    assert [d["twin"] for d in only] == ["nope"]


def test_a_reading_too_late_is_rejected_with_its_reason_and_counted_per_rule(client):
    setup(client)
    now_ms = int(time.time() * 1000)
    assert client.post("/api/ingest", json={"twin": "B1", "ts": now_ms, "values": {"temperature": 70.0}}).json()[
        "accepted"] == 1
    old = [now_ms - 3 * 3_600_000 + i * 1000 for i in range(5)]  # beyond the 1 h re-order window
    r = client.post("/api/ingest", json={"twin": "B1", "ts": old, "values": {"temperature": [60.0] * 5,
                                                                          "vibration": [1.0] * 5}})
    body = r.json()
    assert (body["accepted"], body["rejected"]) == (5, 5)
    [entry] = body["rejections"]
    assert entry["rule"] == "too_late" and entry["count"] == 5
    assert 1 <= len(entry["reasons"]) <= 3 and "temperature" in entry["reasons"][0]


def test_ingest_body_is_bounded_by_max_body_bytes_unless_max_ingest_bytes_is_set(client):
    setup(client)
    settings = client.app.state.platform.settings
    assert "max_ingest_bytes" not in settings.model_fields_set
    two_mb = b"[" + b" " * 2_000_000 + b"]"
    r = client.post("/api/ingest", content=two_mb, headers={"content-type": "application/json"})
    assert r.status_code == 413 and r.headers["content-type"].startswith("application/problem+json")
    problem = r.json()
    assert problem["limit"] == settings.max_body_bytes == 1_048_576
    assert "2,000,002 bytes" in problem["detail"] and "1 MiB" in problem["detail"]
    assert "max_body_bytes" in problem["detail"] and "smaller parts" in problem["detail"]
    assert client.post("/api/ingest", content=b"{oops", headers={"content-type": "application/json"}).status_code == 400
    # a body just under the limit passes the size check (and is read)
    fits = b"[" + b" " * (settings.max_body_bytes - 100) + b"]"
    assert client.post("/api/ingest", content=fits, headers={"content-type": "application/json"}).json()[
        "accepted"] == 0


def test_max_ingest_bytes_when_set_bounds_ingest_alone(tmp_path):
    from fastapi.testclient import TestClient

    from tvilling.api.app import create_app
    from tvilling.app import build_platform
    from tvilling.config import Settings

    with build_platform(Settings(store="memory", max_ingest_bytes=4 * 1_048_576)) as platform, \
            TestClient(create_app(platform=platform)) as c:
        setup(c)
        three_mb = [{"twin": "B1", "ts": 1793534400000 + i, "values": {"temperature": 70.0}, "source": "x" * 200}
                    for i in range(10_000)]
        r = c.post("/api/ingest", json=three_mb)
        assert r.status_code == 200 and r.json()["accepted"] == 10_000
        r = c.post("/api/ingest", content=b"[" + b" " * 5_000_000 + b"]", headers={"content-type": "application/json"})
        assert r.status_code == 413 and "max_ingest_bytes" in r.json()["detail"]
        # other routes keep max_body_bytes
        r = c.post("/api/query", content=b"{" + b" " * 2_000_000 + b"}", headers={"content-type": "application/json"})
        assert r.status_code == 413 and "max_body_bytes" in r.json()["detail"]


def test_history_raw_pages_and_aggregates(client):
    setup(client)
    t0 = 1793534400000  # 2026-11-01T12:00:00Z
    ts = [t0 + i * 1000 for i in range(120)]
    temps = [60.0 + (i % 60) for i in range(120)]
    r = client.post("/api/ingest", json={"twin": "B1", "ts": ts, "values": {"temperature": temps}})
    assert r.json()["accepted"] == 120
    base = "/api/twins/B1/history?property=temperature&from=2026-11-01T12:00:00Z&to=2026-11-01T12:02:00Z"
    page = client.get(base + "&limit=50").json()
    assert len(page["items"]) == 50 and page["items"][0] == {"ts": "2026-11-01T12:00:00Z", "value": 60.0}
    rest = client.get(base + f"&limit=100&after={page['next']}").json()
    assert len(rest["items"]) == 70 and rest["next"] is None
    agg = client.get(base + "&every=1m&agg=min,max,avg,count").json()
    assert agg["items"] == [
        {"ts": "2026-11-01T12:00:00Z", "min": 60.0, "max": 119.0, "avg": 89.5, "count": 60},
        {"ts": "2026-11-01T12:01:00Z", "min": 60.0, "max": 119.0, "avg": 89.5, "count": 60},
    ]
    one = client.get(base + "&every=60s&agg=last").json()["items"]
    assert [b["value"] for b in one] == [119.0, 119.0]
    epoch = client.get(f"/api/twins/B1/history?property=temperature&from={t0}&to={t0 + 5000}").json()
    assert len(epoch["items"]) == 5
    assert client.get(base + "&every=fortnight").status_code == 400
    assert client.get(base + "&every=1m&agg=median").status_code == 400
    assert client.get("/api/twins/nope/history?property=temperature").status_code == 404


def test_retention_rules_are_set_listed_and_applied(client):
    setup(client)
    import time

    from tvilling.runtime import apply_retention

    now_ms = int(time.time() * 1000)
    old, recent = now_ms - 40 * 86_400_000, now_ms - 3_600_000
    r = client.post("/api/ingest", json={"twin": "B1", "ts": [old, recent], "values": {"temperature": [50.0, 51.0]}})
    assert r.json()["accepted"] == 2
    r = client.put("/api/history/retention", json={"model": BEARING, "raw": "30d", "minute": "365d", "hour": None})
    assert r.status_code == 200 and r.json()["raw"] == "30d"
    assert client.get("/api/history/retention").json()["items"] == [
        {"model": BEARING, "twin": None, "property": None, "raw": "30d", "minute": "365d", "hour": None}]
    assert client.put("/api/history/retention", json={"model": "dtmi:x:Nope;1", "raw": "1d"}).status_code == 422
    assert client.put("/api/history/retention", json={"raw": "forever"}).status_code == 400
    deleted = apply_retention(client.app.state.platform)
    assert deleted["raw"] == 1
    items = client.get(f"/api/twins/B1/history?property=temperature&from={old - 1}&to={now_ms}").json()["items"]
    assert [i["value"] for i in items] == [51.0]


def test_http_dead_letters_keep_the_item_its_id_size_and_hash_and_a_repeat_is_counted(client):
    setup(client)
    bad = {"twin": "B1", "ts": "not a time", "values": {"temperature": 1.0}, "id": "gw-9"}
    assert client.post("/api/ingest", json=[bad]).json()["rejected"] == 1
    assert client.post("/api/ingest", json=[bad]).json()["rejected"] == 1  # the device sends it again
    [letter] = client.get("/api/dead-letters").json()["items"]
    assert (letter["message_id"], letter["deliveries"], letter["truncated"]) == ("gw-9", 2, False)
    assert letter["size"] == len(letter["payload"]) and len(letter["digest"]) == 64


def test_columnar_items_of_one_body_keep_their_own_source_and_rejections(client):
    setup(client)
    t = 1793534400000
    r = client.post("/api/ingest", json=[
        {"twin": "B1", "ts": [t, t + 1000], "values": {"temperature": [70.0, 71.0]}, "source": "gw-1"},
        {"twin": "B1", "ts": [t + 1000], "values": {"vibration": [1.5]}, "source": "gw-2"},
        {"twin": "B1", "ts": [t + 2000], "values": {"vibration": [2**53 + 1]}},
    ])
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["accepted"], body["rejected"]) == (3, 1)
    assert [x["rule"] for x in body["rejections"]] == ["range"]
    stamps = client.get("/api/twins/B1").json()["metadata"]["reported"]
    assert stamps["temperature"]["source"] == "gw-1" and stamps["vibration"]["source"] == "gw-2"


def test_a_large_numeric_columnar_body_is_stored_whole(client):
    setup(client)
    t, n = 1793534400000, 5000
    r = client.post("/api/ingest", content=("[" + ",".join(
        f'{{"twin": "B1", "ts": [{",".join(str(t + 1000 * i) for i in range(k, k + 100))}], '
        f'"values": {{"temperature": [{",".join(f"{60 + i % 7}.5" for i in range(k, k + 100))}]}}}}'
        for k in range(0, n, 100)) + "]").encode(), headers={"content-type": "application/json"})
    assert r.status_code == 200, r.text
    assert r.json()["accepted"] == n
    (b,) = client.get(f"/api/twins/B1/history?property=temperature&from={t}&to={t + 1000 * n}&every=2h&agg=count,max"
                      ).json()["items"]
    assert (b["count"], b["max"]) == (n, 66.5)
