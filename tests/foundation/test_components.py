"""The components registry API."""

from __future__ import annotations


async def test_crud_roundtrip(guard):
    admin = await guard.headers("admin")
    c = guard.client
    body = {
        "name": "feature-store",
        "description": "online features",
        "endpoint": "http://127.0.0.1:9000",
        "critical": True,
        "labels": {"region": "eu-west-1", "app": "features"},
        "check": {"kind": "http", "url": "http://127.0.0.1:9000/health", "interval": "15s"},
        "recovery": {"strategies": [{"kind": "notify_only"}], "max_attempts": 2, "cooldown": "5m"},
    }
    r = await c.post("/api/v1/components", headers=admin, json=body)
    assert r.status_code == 201, r.text
    created = r.json()
    assert created["region"] == "eu-west-1"
    assert created["check"]["interval"] == 15
    assert created["recovery"]["cooldown"] == 300
    assert created["state"]["status"] == "unknown"
    assert created["source"] == "api" and created["version"] == 1

    r = await c.patch(
        "/api/v1/components/feature-store",
        headers=admin,
        json={"labels": {"region": "us-east-1"}, "enabled": False},
    )
    assert r.status_code == 200
    assert r.json()["region"] == "us-east-1" and r.json()["enabled"] is False and r.json()["version"] == 2
    assert r.json()["critical"] is True  # untouched fields stay

    viewer = await guard.headers("viewer")
    assert (await c.get("/api/v1/components/feature-store", headers=viewer)).status_code == 200
    assert (await c.delete("/api/v1/components/feature-store", headers=viewer)).status_code == 403
    assert (await c.delete("/api/v1/components/feature-store", headers=admin)).status_code == 204
    assert (await c.get("/api/v1/components/feature-store", headers=admin)).status_code == 404


async def test_list_filters_and_pagination(guard):
    admin = await guard.headers("admin")
    for i in range(7):
        region = "eu" if i % 2 else "us"
        r = await guard.client.post(
            "/api/v1/components",
            headers=admin,
            json={"name": f"stage-{i}", "labels": {"region": region, "tier": str(i % 3)}},
        )
        assert r.status_code == 201
    c = guard.client
    page = (await c.get("/api/v1/components", headers=admin, params={"limit": 3, "offset": 3})).json()
    assert page["total"] == 7 and [x["name"] for x in page["items"]] == ["stage-3", "stage-4", "stage-5"]
    eu = (await c.get("/api/v1/components", headers=admin, params={"region": "eu"})).json()
    assert {x["name"] for x in eu["items"]} == {"stage-1", "stage-3", "stage-5"}
    both = (
        await c.get("/api/v1/components", headers=admin, params=[("label", "region=us"), ("label", "tier=0")])
    ).json()
    assert {x["name"] for x in both["items"]} == {"stage-0", "stage-6"}
    unknown = (await c.get("/api/v1/components", headers=admin, params={"status": "unknown"})).json()
    assert unknown["total"] == 7
    assert (await c.get("/api/v1/components", headers=admin, params={"status": "bogus"})).status_code == 422
    assert (await c.get("/api/v1/components", headers=admin, params={"limit": 5000})).status_code == 422


async def test_validation(guard):
    admin = await guard.headers("admin")
    c = guard.client
    for bad_name in ("UPPER", "has space", "-leading", "a" * 200, ""):
        assert (await c.post("/api/v1/components", headers=admin, json={"name": bad_name})).status_code == 422
    r = await c.post("/api/v1/components", headers=admin, json={"name": "x", "labels": {"bad key!": "v"}})
    assert r.status_code == 422
    r = await c.post("/api/v1/components", headers=admin, json={"name": "x", "unknown_field": 1})
    assert r.status_code == 422
    r = await c.post(
        "/api/v1/components", headers=admin, json={"name": "x", "recovery": {"max_attempts": 0, "typo": 1}}
    )
    assert r.status_code == 422
    problems = r.json()["error"]["details"]["problems"]
    assert "recovery.typo: unknown key" in problems
    assert "recovery.max_attempts: must be a positive integer, got 0" in problems
    # Nothing was created by the refused requests.
    assert (await c.get("/api/v1/components", headers=admin)).json()["total"] == 0


async def test_config_declared_component_refuses_api_edits(guard):
    from app.components.schemas import ComponentCreate
    from app.components.service import ComponentService

    async with guard.session() as session:
        rt = guard.runtime
        await ComponentService(session, rt.secret_box, rt.healing.registry).create(
            ComponentCreate(name="declared"), source="config"
        )
    admin = await guard.headers("admin")
    r = await guard.client.patch("/api/v1/components/declared", headers=admin, json={"description": "x"})
    assert r.status_code == 409
    assert "edit it there" in r.json()["error"]["message"]
    assert (await guard.client.delete("/api/v1/components/declared", headers=admin)).status_code == 409


async def test_label_filters_and_totals_are_answered_by_the_database(guard):
    admin = await guard.headers("admin")
    for i in range(12):
        labels = {"app.kubernetes.io/name": "feat" if i % 2 else "etl", "team": f"t{i % 3}"}
        r = await guard.client.post(
            "/api/v1/components", headers=admin, json={"name": f"c-{i:02d}", "labels": labels}
        )
        assert r.status_code == 201
    c = guard.client
    page = (
        await c.get(
            "/api/v1/components",
            headers=admin,
            params=[("label", "app.kubernetes.io/name=feat"), ("limit", 2), ("offset", 1)],
        )
    ).json()
    assert page["total"] == 6 and [x["name"] for x in page["items"]] == ["c-03", "c-05"]
    both = (
        await c.get(
            "/api/v1/components",
            headers=admin,
            params=[("label", "app.kubernetes.io/name=etl"), ("label", "team=t0")],
        )
    ).json()
    assert both["total"] == 2 and [x["name"] for x in both["items"]] == ["c-00", "c-06"]
    none = (
        await c.get("/api/v1/components", headers=admin, params=[("label", 'team=it\'s "quoted"')])
    ).json()
    assert none["total"] == 0 and none["items"] == []
    beyond = (await c.get("/api/v1/components", headers=admin, params={"offset": 50})).json()
    assert beyond["total"] == 12 and beyond["items"] == []
