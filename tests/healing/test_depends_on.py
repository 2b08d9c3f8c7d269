"""``depends_on`` as the user writes it: over the API (create, patch, delete) and in the YAML file
(``config validate`` exits 2 naming the problem; the sync stores the graph)."""

from __future__ import annotations

import subprocess
import sys

import yaml
from sqlalchemy import select

from app.components import graph
from app.db.models import Component


async def create(guard, name: str, depends_on=None):
    body = {"name": name}
    if depends_on is not None:
        body["depends_on"] = depends_on
    return await guard.client.post("/api/v1/components", headers=await guard.headers("admin"), json=body)


def problems(r) -> list[str]:
    assert r.status_code == 422, r.text
    error = r.json()["error"]
    assert set(error) >= {"type", "message", "details", "timestamp"}
    return error["details"]["problems"]


async def names(guard) -> dict[str, list[str]]:
    async with guard.session() as session:
        return dict((await session.execute(select(Component.name, Component.depends_on))).all())


async def test_api_accepts_a_graph_and_refuses_unknown_names_and_cycles(guard):
    assert (await create(guard, "db")).status_code == 201
    r = await create(guard, "etl", ["db"])
    assert r.status_code == 201 and r.json()["depends_on"] == ["db"]
    assert (await create(guard, "report", ["etl"])).status_code == 201

    assert problems(await create(guard, "ml", ["db", "nope"])) == ["ml.depends_on: unknown component 'nope'"]
    assert problems(await create(guard, "self", ["self"])) == [
        "self.depends_on: a component cannot depend on itself"
    ]
    h = await guard.headers("admin")
    before = await names(guard)
    r = await guard.client.patch("/api/v1/components/db", headers=h, json={"depends_on": ["report"]})
    assert problems(r) == ["dependency cycle: db -> report -> etl -> db"]
    r = await guard.client.patch("/api/v1/components/db", headers=h, json={"depends_on": "report"})
    assert r.status_code == 422
    assert await names(guard) == before  # bad input changes nothing
    assert "ml" not in before and "self" not in before

    r = await guard.client.get("/api/v1/components/report", headers=h)
    assert r.json()["depends_on"] == ["etl"]
    r = await guard.client.delete("/api/v1/components/db", headers=h)
    assert r.status_code == 409 and r.json()["error"]["details"]["dependents"] == ["etl"]
    r = await guard.client.patch("/api/v1/components/etl", headers=h, json={"depends_on": []})
    assert r.status_code == 200 and r.json()["depends_on"] == []
    assert (await guard.client.delete("/api/v1/components/db", headers=h)).status_code == 204


def run_validate(path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "app", "config", "validate", str(path)],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_config_validate_names_the_cycle_and_the_unknown_component(tmp_path):
    path = tmp_path / "guard.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "components": [
                    {"name": "db", "depends_on": ["report"]},
                    {"name": "etl", "depends_on": ["db", "warehouse"]},
                    {"name": "report", "depends_on": ["etl"]},
                ]
            }
        )
    )
    result = run_validate(path)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "etl.depends_on: unknown component 'warehouse'" in result.stderr
    assert "dependency cycle: db -> report -> etl -> db" in result.stderr
    path.write_text(
        yaml.safe_dump(
            {
                "components": [
                    {"name": "db"},
                    {"name": "etl", "depends_on": ["db"]},
                    {"name": "report", "depends_on": ["etl"]},
                ]
            }
        )
    )
    result = run_validate(path)
    assert result.returncode == 0, result.stderr


async def test_declared_components_keep_their_graph(db_url, tmp_path):
    from app.monitoring.declarative import sync_declared_components
    from tests.conftest import make_settings, running_guard

    declared = [
        {"name": "report", "depends_on": ["etl"]},
        {"name": "etl", "depends_on": ["db"]},
        {"name": "db"},
    ]
    settings = make_settings(db_url, tmp_path, components=declared)
    async with running_guard(settings, build_services=lambda rt: []) as guard:
        rt = guard.runtime
        await sync_declared_components(
            rt.core, rt.secret_box, rt.healing.registry
        )  # created in file order: report before etl
        assert await names(guard) == {"report": ["etl"], "etl": ["db"], "db": []}
        r = await guard.client.patch(
            "/api/v1/components/etl", headers=await guard.headers("admin"), json={"depends_on": []}
        )
        assert r.status_code == 409  # the file owns declared components


def test_graph_helpers():
    dag = {"db": [], "etl": ["db"], "report": ["etl"], "ml": ["db", "etl"]}
    assert graph.ancestors(dag, "report") == ["etl", "db"]
    assert graph.descendants(dag, "db") == ["etl", "ml", "report"]
    assert graph.roots(dag, "report", {"etl", "db"}) == ["db"]
    assert graph.roots(dag, "report", {"etl"}) == ["etl"]
    assert graph.roots(dag, "report", set()) == []
    assert graph.find_cycle({"a": ["b"], "b": ["c"], "c": ["a"]}) == ["a", "b", "c", "a"]
    assert graph.problems(dag) == []
