async def test_health_and_login(guard):
    r = await guard.client.get("/health")
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "healthy"
    headers = await guard.headers("admin")
    r = await guard.client.get("/api/v1/auth/me", headers=headers)
    assert r.json()["role"] == "admin"
    r = await guard.client.post(
        "/api/v1/components",
        headers=headers,
        json={"name": "etl", "check": {"kind": "http", "url": "http://x"}},
    )
    assert r.status_code == 201, r.text
    r = await guard.client.get("/api/v1/components", headers=headers)
    assert r.json()["total"] == 1
    r = await guard.client.get("/ready")
    assert r.status_code == 200, r.text
