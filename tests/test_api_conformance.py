"""An independent check of RFC 7643/7644 conformance: scim2-tester, run against the app.

scim2-tester (python-scim, the authors of scim2-models and scim2-server) reads the
discovery endpoints, builds a model of each resource type from the published schemas,
then creates, reads, lists, projects, replaces, patches (add, replace and remove of
every attribute) and deletes resources of each, and grades every answer against the
RFC. Our own tests say what we meant; this one says whether someone else's reading of
the RFC agrees, and it keeps our published schemas honest: an attribute the schema
promises but the service mishandles fails here. Runs on both stores (conftest).
"""

from __future__ import annotations

from collections import Counter

import pytest
from scim2_client.engines.wsgi import WSGISCIMClient
from scim2_tester import Status, check_server

from tests.conftest import PREFIX

# What the RFC requires (SUCCESS) or recommends (COMPLIANT), or allows (ACCEPTABLE).
PASSING = {Status.SUCCESS, Status.COMPLIANT, Status.ACCEPTABLE}


@pytest.fixture
def results(app, token) -> list:
    client = WSGISCIMClient(
        app.wsgi_app,
        base_url=f"http://localhost{PREFIX}",
        headers={"Authorization": f"Bearer {token}"},
    )
    return check_server(client)


def _described(result) -> str:
    return f"{result.status.name} {result.resource_type or '-'} {result.title}: {result.reason}"


def test_every_check_passes(results) -> None:
    failed = [_described(result) for result in results if result.status not in PASSING]

    assert failed == []


def test_every_resource_type_went_through_its_whole_life(results, scim) -> None:
    """The checks above could pass vacuously if discovery found nothing to check."""
    ran = Counter(
        (result.resource_type, tag)
        for result in results
        if result.status is Status.SUCCESS
        for tag in result.tags
    )
    for resource_type in ("User", "Group"):
        for tag in ("crud:create", "crud:read", "crud:update", "crud:delete"):
            assert ran[resource_type, tag] > 0, (resource_type, tag)
    # Each PATCH operation ran on attributes of both types.
    titles = Counter((result.resource_type, result.title) for result in results)
    for resource_type in ("User", "Group"):
        for title in ("check_add_attribute", "check_replace_attribute", "check_remove_attribute"):
            assert titles[resource_type, title] > 0, (resource_type, title)
    # It cleans up after itself: what it created, it deleted.
    assert scim.get("/Users").get_json()["totalResults"] == 0
    assert scim.get("/Groups").get_json()["totalResults"] == 0
