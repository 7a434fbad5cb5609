"""Practitioners are found by ``family`` and ``given`` as patients are (a clinician looks up a
colleague by name), also those stored before the gateway indexed these parameters: migration
0018 writes their index rows."""

from __future__ import annotations

import asyncio

import pytest
from alembic import command
from alembic.config import Config
from harness import BACKENDS, LiveServer, start_server

from gateway.store.database import MIGRATIONS, Database


def found(server: LiveServer, **params: str) -> list[str]:
    with server.client() as fhir:
        answer = fhir.get("/Practitioner", params=params)
    assert answer.status_code == 200, answer.text
    return sorted(e["resource"]["name"][0]["family"] for e in answer.json().get("entry", []))


def downgrade(url: str, revision: str) -> None:
    db = Database(url, threads=1)
    try:
        with db.engine.begin() as conn:
            config = Config()
            config.set_main_option("script_location", str(MIGRATIONS))
            config.attributes["connection"] = conn
            command.downgrade(config, revision)
    finally:
        asyncio.run(db.dispose())


@pytest.mark.parametrize("backend", BACKENDS)
def test_practitioners_are_found_by_family_and_given_also_after_an_upgrade(backend, tmp_path):
    server, database = start_server(backend, tmp_path)
    try:
        with server.client() as fhir:
            for family, given in (("Jansen", ["Pieter", "Jan"]), ("de Vries", ["Anna"])):
                body = {
                    "resourceType": "Practitioner",
                    "name": [{"family": family, "given": given}],
                }
                assert fhir.post("/Practitioner", json=body).status_code == 201
        assert found(server, family="jans") == ["Jansen"]
        assert found(server, given="ann") == ["de Vries"]
        assert found(server, **{"given:exact": "Jan"}) == ["Jansen"]
        server.stop()

        downgrade(database.url, "0017")  # a store from before: no family/given rows
        server = LiveServer(server.settings, backend).start()  # migrates to the newest
        assert found(server, family="de vr") == ["de Vries"]
        assert found(server, given="piet") == ["Jansen"]
    finally:
        server.stop()
        database.drop()
