from __future__ import annotations

from datetime import datetime

from api_plant import BEARING, LINE, MACHINE, PLANT_V2, SPINDLE, plant_documents

BEARINGS_HOT_ON_L1 = {
    "match": [
        {"model": LINE, "where": [["id", "=", "L1"]]},
        {"via": "hasMachine"},
        {"via": "hasBearing", "model": BEARING, "where": [["reported.temperature", ">", 80]]},
    ]
}


def test_health_and_openapi_name_the_contract_paths(client):
    r = client.get("/health")
    assert r.status_code == 200 and r.json()["status"] == "ok" and r.json()["version"]
    paths = client.get("/openapi.json").json()["paths"]
    for path in ("/health", "/api/models", "/api/models/{dtmi}", "/api/twins/{twin_id}",
                 "/api/twins/{twin_id}/relationships/{rel_id}", "/api/twins/{twin_id}/relationships",
                 "/api/query", "/api/twins/{twin_id}/events", "/api/events"):
        assert path in paths, path
    assert {"put", "get", "patch", "delete"} <= set(paths["/api/twins/{twin_id}"])


def test_models_register_validate_only_list_and_get(client):
    docs = plant_documents()
    r = client.post("/api/models?validate_only=true", json=docs)
    assert r.status_code == 200 and r.json()["valid"] is True
    assert client.get("/api/models").json()["items"] == []  # nothing stored
    r = client.post("/api/models", json=docs)
    assert r.status_code == 201
    ids = {m["id"] for m in client.get("/api/models").json()["items"]}
    assert {LINE, MACHINE, BEARING, SPINDLE} <= ids
    got = client.get(f"/api/models/{BEARING}").json()
    assert got["definition"]["@id"] == BEARING and got["decommissioned"] is False
    assert client.post("/api/models", json=docs).status_code == 201  # identical again: no-op
    changed = next(d for d in docs if d["@id"] == BEARING) | {"displayName": "Something else"}
    r = client.post("/api/models", json=changed)
    assert r.status_code == 409 and "new version" in r.json()["detail"]
    assert client.get("/api/models/dtmi:tvilling:example:Nope;1").status_code == 404


def test_unsupported_dtdl_feature_is_rejected_with_its_path(client):
    doc = {
        "@context": "dtmi:dtdl:context;3",
        "@id": "dtmi:test:Odd;1",
        "@type": "Interface",
        "contents": [{"@type": "Property", "name": "a", "schema": "double"},
                     {"@type": "Gizmo", "name": "b"}],
    }
    r = client.post("/api/models", json=doc)
    assert r.status_code == 422
    body = r.json()
    assert "Gizmo" in body["detail"] and "contents[1]" in body["detail"]
    assert client.get("/api/models/dtmi:test:Odd;1").status_code == 404


def test_twin_lifecycle_with_etag_and_if_match(plant):
    c = plant
    r = c.get("/api/twins/M1")
    assert r.status_code == 200
    twin = r.json()
    assert {"id", "model", "revision", "attributes", "reported", "desired", "metadata"} <= set(twin)
    assert r.headers["etag"] == f'"{twin["revision"]}"'
    rev = twin["revision"]
    r = c.patch("/api/twins/M1", json={"desired": {"speedSetpoint": 1500.0}, "reported": {"speed": 1480.0}},
                headers={"If-Match": f'"{rev}"'})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["revision"] == rev + 1
    assert body["desired"]["speedSetpoint"] == 1500.0
    assert body["delta"] == {"speedSetpoint": 1500.0}
    assert body["metadata"]["reported"]["speed"]["quality"] == "good"
    # a stale If-Match is refused and nothing is lost
    r = c.patch("/api/twins/M1", json={"reported": {"speed": 1.0}}, headers={"If-Match": f'"{rev}"'})
    assert r.status_code == 412
    assert r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["revision"] == rev + 1
    assert c.get("/api/twins/M1").json()["reported"]["speed"] == 1480.0
    # merge-patch null removes a value
    r = c.patch("/api/twins/M1", json={"desired": {"speedSetpoint": None}})
    assert r.json()["desired"] == {} and r.json()["delta"] == {}


def test_validation_names_twin_field_and_rule(plant):
    c = plant
    cases = [
        ({"reported": {"nonsense": 1}}, "unknown_property"),
        ({"reported": {"temperature": "hot"}}, "type"),
        ({"desired": {"temperature": 20.0}}, "not_writable"),
        ({"reported": {"temperature": {"value": 3.0, "unit": "ampere"}}}, "unit"),
    ]
    for patch, rule in cases:
        r = c.patch("/api/twins/B1", json=patch)
        assert r.status_code == 422, (patch, r.text)
        body = r.json()
        assert body["twin"] == "B1" and body["rule"] == rule, body
        assert "B1" in body["detail"]
    r = c.patch("/api/twins/B1", json={"reported": {"temperature": {"value": 185.0, "unit": "degreeFahrenheit"}}})
    assert r.status_code == 200
    assert abs(r.json()["reported"]["temperature"] - 85.0) < 1e-9
    r = c.put("/api/twins/X1", json={"model": "dtmi:tvilling:example:Nope;1"})
    assert r.status_code == 422 and r.json()["rule"] == "unknown_model"


def test_relationship_rules(plant):
    c = plant
    # wrong target model: a machine's bearing relationship pointing at a line
    r = c.put("/api/twins/M1/relationships/bad", json={"name": "hasBearing", "target": "L2"})
    assert r.status_code == 422 and r.json()["rule"] == "target_model"
    # multiplicity: at most one spindle
    for s in ("S1", "S2"):
        assert c.put(f"/api/twins/{s}", json={"model": SPINDLE}).status_code == 201
    assert c.put("/api/twins/M1/relationships/sp1", json={"name": "hasSpindle", "target": "S1"}).status_code == 200
    r = c.put("/api/twins/M1/relationships/sp2", json={"name": "hasSpindle", "target": "S2"})
    assert r.status_code == 422 and r.json()["rule"] == "multiplicity"
    # replacing the same relationship id is not a second one
    assert c.put("/api/twins/M1/relationships/sp1", json={"name": "hasSpindle", "target": "S2"}).status_code == 200
    r = c.put("/api/twins/M1/relationships/x", json={"name": "hasNothing", "target": "S1"})
    assert r.status_code == 422
    r = c.put("/api/twins/M1/relationships/y", json={"name": "hasBearing", "target": "ghost"})
    assert r.status_code == 422 and r.json()["rule"] == "target_exists"
    rels = c.get("/api/twins/M1/relationships").json()["items"]
    assert {r["id"] for r in rels} == {"M1-B1", "M1-B2", "sp1"}
    incoming = c.get("/api/twins/S2/relationships?incoming=true").json()["items"]
    assert incoming == [{"id": "sp1", "name": "hasSpindle", "target": "S2", "properties": {}, "source": "M1"}]
    # a twin with incoming relationships cannot be deleted
    r = c.delete("/api/twins/S2")
    assert r.status_code == 409 and "M1/sp1" in r.json()["detail"]
    assert c.delete("/api/twins/M1/relationships/sp1").status_code == 204
    assert c.delete("/api/twins/S2").status_code == 204
    assert c.get("/api/twins/S2").status_code == 404


def test_multi_hop_query_and_pagination(plant):
    c = plant
    r = c.post("/api/query", json=BEARINGS_HOT_ON_L1)
    assert r.status_code == 200, r.text
    assert [t["id"] for t in r.json()["items"]] == ["B1", "B3"]
    # inbound traversal: the lines that hold a bearing hotter than 90
    q = {"match": [{"model": BEARING, "where": [["reported.temperature", ">", 90]]},
                   {"via": "hasBearing", "direction": "in"},
                   {"via": "hasMachine", "direction": "in"}]}
    assert [t["id"] for t in c.post("/api/query", json=q).json()["items"]] == ["L1", "L2"]
    # relationship property filter
    q = {"match": [{"model": MACHINE}, {"via": "hasBearing", "rel_where": [["location", "=", "drive-end"]]}]}
    assert [t["id"] for t in c.post("/api/query", json=q).json()["items"]] == ["B1", "B3", "B5"]
    # model filter includes models that extend it: Asset covers lines, machines, bearings
    seen, cursor = [], None
    while True:
        body = {"model": "dtmi:tvilling:example:Asset;1", "limit": 4}
        if cursor:
            body["cursor"] = cursor
        page = c.post("/api/query", json=body).json()
        seen += [t["id"] for t in page["items"]]
        cursor = page["next"]
        if cursor is None:
            break
    assert seen == sorted(seen) and len(seen) == len(set(seen)) == 11
    r = c.post("/api/query", json={"model": BEARING, "where": [["reported.temperature", "~", 1]]})
    assert r.status_code == 400 and "operator" in r.json()["detail"]
    assert c.post("/api/query", json={"model": BEARING, "limit": 5000}).status_code == 413


def test_events_feed_and_time_travel(plant):
    c = plant
    first = c.get("/api/twins/B2").json()
    r = c.patch("/api/twins/B2", json={"reported": {"temperature": 61.0}})
    middle = r.json()
    c.patch("/api/twins/B2", json={"reported": {"temperature": 62.0}})
    events = c.get("/api/twins/B2/events").json()["items"]
    assert [e["revision"] for e in events] == list(range(1, len(events) + 1))
    assert events[0]["type"] == "TwinCreated" and events[-1]["type"] == "TwinPatched"
    assert c.get(f"/api/twins/B2/events?after={len(events) - 1}").json()["items"][0]["revision"] == len(events)
    old = c.get(f"/api/twins/B2?revision={middle['revision']}").json()
    assert old["reported"]["temperature"] == 61.0
    at = c.get("/api/twins/B2", params={"at": middle["updated"]}).json()
    assert at["revision"] == middle["revision"]
    assert c.get("/api/twins/B2", params={"at": "2000-01-01T00:00:00Z"}).status_code == 404
    assert datetime.fromisoformat(first["created"].replace("Z", "+00:00"))
    feed = c.get("/api/events?after=0&limit=1000").json()
    positions = [e["position"] for e in feed["items"]]
    assert positions == sorted(positions) and len(positions) == len(set(positions))
    tail = c.get(f"/api/events?after={positions[-3]}").json()["items"]
    assert [e["position"] for e in tail] == positions[-2:]


def test_bounds_and_malformed_requests(plant):
    c = plant
    assert c.put("/api/twins/" + "x" * 300, json={"model": BEARING}).status_code == 413
    assert c.put("/api/twins/bad%20id", json={"model": BEARING}).status_code == 422
    r = c.patch("/api/twins/B1", content=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code == 400 and r.json()["status"] == 400
    big = {"attributes": {"blob": "x" * 2_000_000}}
    assert c.patch("/api/twins/B1", json=big).status_code == 413
    deep: dict = {}
    cur = deep
    for _ in range(40):
        cur["a"] = {}
        cur = cur["a"]
    assert c.patch("/api/twins/B1", json={"attributes": deep}).status_code == 413
    assert c.get("/api/twins/nope").status_code == 404
    assert c.get("/api/nothing-here").status_code == 404
    assert c.get("/api/twins/B1?revision=abc").status_code == 400


def test_model_versions_migration_and_decommission(plant):
    c = plant
    assert c.post("/api/models", json=plant_documents(PLANT_V2)).status_code == 201
    v2 = "dtmi:tvilling:example:Bearing;2"
    # the unversioned model matches every version
    c.put("/api/twins/B9", json={"model": v2, "reported": {"temperature": 50.0}})
    q = {"model": "dtmi:tvilling:example:Bearing", "where": [["reported.temperature", "<", 65]]}
    assert [t["id"] for t in c.post("/api/query", json=q).json()["items"]] == ["B2", "B9"]
    # B1 is the target of M1's hasBearing, declared for Bearing;1, which Bearing;2 does not extend
    dry = c.post("/api/twins/B1/migrate", json={"model": v2, "dry_run": True}).json()
    assert dry["ok"] is False and dry["applied"] is False
    assert dry["problems"][0]["rule"] == "target_model" and "M1/M1-B1" in dry["problems"][0]["message"]
    assert c.post("/api/twins/B1/migrate", json={"model": v2}).status_code == 422
    # a bearing nothing points at migrates
    c.put("/api/twins/B11", json={"model": BEARING, "reported": {"temperature": 40.0}})
    dry = c.post("/api/twins/B11/migrate", json={"model": v2, "dry_run": True}).json()
    assert dry["ok"] is True and dry["applied"] is False
    assert c.get("/api/twins/B11").json()["model"] == BEARING
    done = c.post("/api/twins/B11/migrate", json={"model": v2}).json()
    assert done["applied"] is True
    assert c.get("/api/twins/B11").json()["model"] == v2
    bad = c.post("/api/twins/B2/migrate", json={"model": MACHINE})
    assert bad.status_code == 422
    assert c.post(f"/api/models/{BEARING}/decommission").json()["decommissioned"] is True
    r = c.put("/api/twins/B10", json={"model": BEARING})
    assert r.status_code == 422 and r.json()["rule"] == "decommissioned"
    assert c.patch("/api/twins/B2", json={"reported": {"temperature": 1.0}}).status_code == 200
