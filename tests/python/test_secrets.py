"""Secrets API of Keystead through the official azure-keyvault-secrets SecretClient.

Covers: set (a new 32-hex version each time), get latest / by version, update properties (enabled,
not_before, expires_on, content_type, tags), disabled secrets (403 SecretDisabled), list with paging
(SDK and raw: maxresults, absolute nextLink, no values), list versions, delete (synchronous poller),
get/list deleted, recover, purge, 409 on reuse of a soft-deleted name, case-insensitive names,
backup/restore between vaults (same version ids, 409 on existing names), purge protection (403),
recoveryLevel/recoverableDays/scheduledPurgeDate for retention 90 and 7 with/without purge protection,
api-version acceptance, request-id headers, trailing/double slashes, wire format of timestamps, and
persistence across a restart (same credentials, same data, old SDK client keeps working).
"""

from __future__ import annotations

import datetime as dt
import re
import time
from urllib.parse import parse_qs, urlparse

import pytest
from azure.core.exceptions import HttpResponseError, ResourceExistsError, ResourceNotFoundError

from keystead_helpers import assert_kv_error, b64url_decode, uniq, version_of

HEX32 = re.compile(r"^[0-9a-f]{32}$")
UTC = dt.timezone.utc
POLL_INTERVAL_S = 2.0   # SDK delete/recover poller interval: a synchronous server finishes before it


# ---------------------------------------------------------------------------- helpers
def expected_level(retention_days: int, purge_protection: bool) -> str:
    base = "Recoverable" if retention_days == 90 else "CustomizedRecoverable"
    return base if purge_protection else base + "+Purgeable"


def finish_quickly(poller):
    """Wait for an SDK delete/recover poller; a synchronous server completes at the first poll."""
    result = poller.result()
    t0 = time.monotonic()
    poller.wait(timeout=15)
    elapsed = time.monotonic() - t0
    assert poller.done(), "poller did not finish within 15 s"
    assert elapsed < POLL_INTERVAL_S - 0.1, f"poller needed {elapsed:.1f}s: first poll was not successful"
    return result


def delete_now(client, name: str):
    return finish_quickly(client.begin_delete_secret(name))


def recover_now(client, name: str):
    return finish_quickly(client.begin_recover_deleted_secret(name))


def versions_of(client, name: str) -> set:
    return {p.version for p in client.list_properties_of_secret_versions(name)}


def vault_info(server, name: str) -> dict:
    vaults = server.admin("vault", "list")
    assert isinstance(vaults, list), f"vault list is not a JSON array: {vaults!r}"
    matches = [v for v in vaults if v.get("name") == name]
    assert matches, f"vault {name!r} not in {vaults!r}"
    return matches[0]


@pytest.fixture(scope="module")
def demo_info(server) -> dict:
    return vault_info(server, "demo")


def make_vault(server, *flags):
    name = uniq("v")
    info = server.create_vault(name, *flags)
    return name, info, server.secret_client(name)


# ---------------------------------------------------------------------------- set / get
def test_set_creates_a_new_version_each_time(server, client, name):
    s1 = client.set_secret(name, "value-one")
    s2 = client.set_secret(name, "value-two")
    for s in (s1, s2):
        assert HEX32.match(s.properties.version), s.properties.version
        assert s.id == f"{server.vault_url()}/secrets/{name}/{s.properties.version}"
        assert s.name == name
        assert s.properties.enabled is True
        assert isinstance(s.properties.created_on, dt.datetime)
        assert isinstance(s.properties.updated_on, dt.datetime)
    assert s1.properties.version != s2.properties.version
    assert s1.value == "value-one" and s2.value == "value-two"

    latest = client.get_secret(name)
    assert latest.value == "value-two"
    assert latest.properties.version == s2.properties.version
    old = client.get_secret(name, s1.properties.version)
    assert old.value == "value-one"
    assert old.properties.version == s1.properties.version


def test_get_missing_secret_and_missing_version(client, name):
    with pytest.raises(ResourceNotFoundError) as ei:
        client.get_secret(name)
    assert ei.value.status_code == 404
    assert ei.value.error is not None and ei.value.error.code == "SecretNotFound"
    client.set_secret(name, "x")
    with pytest.raises(ResourceNotFoundError):
        client.get_secret(name, "0" * 32)


def test_set_with_attributes_roundtrip(client, name):
    nbf = dt.datetime(2020, 1, 2, 3, 4, 5, tzinfo=UTC)
    exp = dt.datetime(2040, 6, 7, 8, 9, 10, tzinfo=UTC)
    s = client.set_secret(name, "v", content_type="text/plain", tags={"env": "test", "team": "kv"},
                          not_before=nbf, expires_on=exp)
    got = client.get_secret(name)
    for props in (s.properties, got.properties):
        assert props.content_type == "text/plain"
        assert props.tags == {"env": "test", "team": "kv"}
        assert props.not_before == nbf
        assert props.expires_on == exp


def test_empty_value_and_unicode_value(client):
    n1, n2 = uniq("empty"), uniq("uni")
    client.set_secret(n1, "")
    assert client.get_secret(n1).value == ""
    text = "päss wörd ✓ 密码 \n\t\"quoted\" \\ end"
    client.set_secret(n2, text)
    assert client.get_secret(n2).value == text


def test_update_properties(client, name):
    s1 = client.set_secret(name, "one")
    s2 = client.set_secret(name, "two")
    nbf = dt.datetime(2021, 3, 4, 5, 6, 7, tzinfo=UTC)
    exp = dt.datetime(2041, 3, 4, 5, 6, 7, tzinfo=UTC)
    upd = client.update_secret_properties(name, content_type="application/json", tags={"k": "v"},
                                          not_before=nbf, expires_on=exp)
    assert upd.version == s2.properties.version
    assert upd.content_type == "application/json"
    assert upd.tags == {"k": "v"}
    assert upd.not_before == nbf and upd.expires_on == exp
    latest = client.get_secret(name)
    assert latest.value == "two"
    assert latest.properties.content_type == "application/json"
    assert latest.properties.tags == {"k": "v"}
    assert latest.properties.updated_on >= latest.properties.created_on
    # the older version is untouched
    old = client.get_secret(name, s1.properties.version)
    assert old.properties.content_type is None
    assert not old.properties.tags

    # updating a specific version
    upd1 = client.update_secret_properties(name, s1.properties.version, enabled=False)
    assert upd1.enabled is False and upd1.version == s1.properties.version
    assert client.get_secret(name).properties.enabled is True
    versions = {p.version: p.enabled for p in client.list_properties_of_secret_versions(name)}
    assert versions == {s1.properties.version: False, s2.properties.version: True}


def test_update_missing_secret_is_404(client, name):
    with pytest.raises(ResourceNotFoundError):
        client.update_secret_properties(name, content_type="x")


def test_disabled_secret_get_is_forbidden(client, name):
    s = client.set_secret(name, "hidden")
    client.update_secret_properties(name, enabled=False)
    for args in ((name,), (name, s.properties.version)):
        with pytest.raises(HttpResponseError) as ei:
            client.get_secret(*args)
        err = ei.value
        assert err.status_code == 403
        assert err.error is not None and err.error.code == "Forbidden"
        assert (err.error.innererror or {}).get("code") == "SecretDisabled"
        assert "hidden" not in str(err)
    # still listed, shown as disabled
    listed = [p for p in client.list_properties_of_secrets() if p.name == name]
    assert len(listed) == 1 and listed[0].enabled is False
    client.update_secret_properties(name, enabled=True)
    assert client.get_secret(name).value == "hidden"


# ---------------------------------------------------------------------------- lists
def test_list_secrets_paging_sdk(client):
    prefix = uniq("page")
    names = {f"{prefix}-{i:02d}" for i in range(30)}
    for n in sorted(names):
        client.set_secret(n, "v-" + n)
    seen = []
    pages = 0
    for page in client.list_properties_of_secrets(max_page_size=10).by_page():
        pages += 1
        items = list(page)
        assert len(items) <= 10
        seen.extend(items)
        assert pages < 1000
    ours = [p for p in seen if p.name in names]
    assert {p.name for p in ours} == names
    assert len(ours) == len(names), "duplicates across pages"
    assert pages >= 3
    for p in ours:
        assert p.version is None, f"list item id must be the base id, got {p.id}"
        assert p.enabled is True


def test_list_secrets_paging_raw(server, client, raw):
    prefix = uniq("rawpage")
    names = {f"{prefix}-{i:02d}" for i in range(27)}
    for n in names:
        client.set_secret(n, "v")
    vault = urlparse(server.vault_url())
    r = raw.get("/secrets", params={"maxresults": 25})
    assert r.status_code == 200, r.text
    collected, pages = [], 0
    while True:
        pages += 1
        assert pages <= 200, "too many pages"
        body = r.json()
        assert isinstance(body.get("value"), list)
        assert len(body["value"]) <= 25
        for item in body["value"]:
            assert "value" not in item, f"list item carries a secret value: {item}"
            assert item["id"].startswith(f"{server.vault_url()}/secrets/")
            collected.append(item)
        link = body.get("nextLink")
        if not link:
            break
        u = urlparse(link)
        assert (u.scheme, u.netloc) == (vault.scheme, vault.netloc), f"nextLink {link} not on {vault.netloc}"
        assert u.path.rstrip("/").endswith("/secrets"), link
        has_version = "api-version" in parse_qs(u.query)
        r = raw.get("", full_url=link, api_version=None if has_version else "2026-04-01")
        assert r.status_code == 200, f"{link}: {r.status_code} {r.text}"
    assert pages >= 2, "more than 25 secrets exist: expected a nextLink on the first page"
    listed = {item["id"].rsplit("/", 1)[-1] for item in collected}
    assert names <= listed
    ids = [item["id"] for item in collected]
    assert len(ids) == len(set(ids)), "duplicate items across pages"


def test_maxresults_over_25_is_400(raw):
    for path in ("/secrets", "/deletedsecrets"):
        assert_kv_error(raw.get(path, params={"maxresults": 26}), 400, "BadParameter")
    ok = raw.get("/secrets", params={"maxresults": 1})
    assert ok.status_code == 200 and len(ok.json()["value"]) <= 1


def test_list_versions(server, client, name):
    created = [client.set_secret(name, f"v{i}").properties.version for i in range(3)]
    props = list(client.list_properties_of_secret_versions(name))
    assert {p.version for p in props} == set(created)
    for p in props:
        assert p.id == f"{server.vault_url()}/secrets/{name}/{p.version}"
    pages = list(client.list_properties_of_secret_versions(name, max_page_size=1).by_page())
    assert sum(len(list(p)) for p in pages) == 3
    assert len(pages) >= 3


def test_many_versions_paging_raw(server, raw, name):
    made = {version_of(raw.set_secret(name, f"v{i}")["id"]) for i in range(28)}
    r = raw.get(f"/secrets/{name}/versions", params={"maxresults": 25})
    seen, pages = set(), 0
    while True:
        pages += 1
        assert r.status_code == 200 and pages <= 20, r.text
        body = r.json()
        assert len(body["value"]) <= 25
        seen |= {version_of(item["id"]) for item in body["value"]}
        link = body.get("nextLink")
        if not link:
            break
        assert link.startswith(server.vault_url() + "/"), link
        has_version = "api-version" in parse_qs(urlparse(link).query)
        r = raw.get("", full_url=link, api_version=None if has_version else "2026-04-01")
    assert pages >= 2
    assert seen == made
    # Versions page in creation order: the last page holds the newest.
    newest = version_of(raw.set_secret(name, "newest")["id"])
    last = raw.get(f"/secrets/{name}/versions", params={"maxresults": 25, "$skiptoken": "25"})
    assert last.status_code == 200, last.text
    assert [version_of(i["id"]) for i in last.json()["value"]][-1] == newest
    assert "nextLink" not in last.json() or not last.json()["nextLink"]
    bad = raw.get(f"/secrets/{name}/versions", params={"$skiptoken": "not-a-position"})
    assert_kv_error(bad, 400, "BadParameter")


def test_deleted_secrets_paging_sdk(client):
    prefix = uniq("delpage")
    names = {f"{prefix}-{i:02d}" for i in range(27)}
    for n in names:
        client.set_secret(n, "x")
        client.begin_delete_secret(n)
    pages = list(client.list_deleted_secrets(max_page_size=5).by_page())
    items = [d for p in pages for d in p]
    ours = [d for d in items if d.name in names]
    assert {d.name for d in ours} == names and len(ours) == len(names)
    assert len(pages) >= 6
    for d in ours:
        assert d.recovery_id.endswith(f"/deletedsecrets/{d.name}")
        assert d.deleted_date is not None and d.scheduled_purge_date is not None


def test_list_versions_raw_has_no_values(raw, name):
    raw.set_secret(name, "secret-value-should-not-be-listed")
    r = raw.get(f"/secrets/{name}/versions")
    assert r.status_code == 200, r.text
    items = r.json()["value"]
    assert len(items) == 1
    assert "value" not in items[0]
    assert HEX32.match(version_of(items[0]["id"]))
    assert "secret-value-should-not-be-listed" not in r.text


# ---------------------------------------------------------------------------- delete / recover / purge
def test_delete_and_deleted_views(server, client, demo_info, name):
    client.set_secret(name, "to-delete")
    deleted = delete_now(client, name)
    retention = demo_info["retention_days"]
    assert deleted.name == name
    assert deleted.recovery_id == f"{server.vault_url()}/deletedsecrets/{name}"
    assert isinstance(deleted.deleted_date, dt.datetime)
    assert deleted.scheduled_purge_date - deleted.deleted_date == dt.timedelta(days=retention)
    assert deleted.properties.recovery_level == expected_level(retention, demo_info["purge_protection"])
    assert deleted.properties.recoverable_days == retention

    with pytest.raises(ResourceNotFoundError):
        client.get_secret(name)
    got = client.get_deleted_secret(name)
    assert got.name == name and got.recovery_id == deleted.recovery_id
    assert got.deleted_date == deleted.deleted_date
    assert name in {d.name for d in client.list_deleted_secrets()}
    assert name not in {p.name for p in client.list_properties_of_secrets()}


def test_delete_raw_response_shape(server, raw, demo_info, name):
    raw.set_secret(name, "raw-delete-value")
    r = raw.delete(f"/secrets/{name}")
    assert r.status_code == 200, r.text
    body = r.json()
    assert "value" not in body
    assert body["recoveryId"] == f"{server.vault_url()}/deletedsecrets/{name}"
    assert isinstance(body["deletedDate"], int) and isinstance(body["scheduledPurgeDate"], int)
    assert body["scheduledPurgeDate"] - body["deletedDate"] == demo_info["retention_days"] * 86400
    assert abs(body["deletedDate"] - time.time()) < 300
    assert body["attributes"]["recoverableDays"] == demo_info["retention_days"]
    g = raw.get(f"/deletedsecrets/{name}")
    assert g.status_code == 200 and "value" not in g.json()
    lst = raw.get("/deletedsecrets", params={"maxresults": 25})
    assert lst.status_code == 200
    for item in lst.json()["value"]:
        assert "value" not in item


def test_delete_missing_secret_is_404(client, name):
    with pytest.raises(ResourceNotFoundError):
        client.begin_delete_secret(name)
    client.set_secret(name, "x")
    delete_now(client, name)
    with pytest.raises(ResourceNotFoundError):      # already deleted
        client.begin_delete_secret(name)


def test_recover_deleted_secret(client, name):
    s1 = client.set_secret(name, "first")
    s2 = client.set_secret(name, "second")
    delete_now(client, name)
    recovered = recover_now(client, name)
    assert recovered.name == name
    assert recovered.version == s2.properties.version
    assert client.get_secret(name).value == "second"
    assert client.get_secret(name, s1.properties.version).value == "first"
    with pytest.raises(ResourceNotFoundError):
        client.get_deleted_secret(name)
    with pytest.raises(ResourceNotFoundError):
        client.begin_recover_deleted_secret(name)


def test_purge_deleted_secret(client, name):
    old = client.set_secret(name, "before-purge")
    delete_now(client, name)
    client.purge_deleted_secret(name)
    with pytest.raises(ResourceNotFoundError):
        client.get_deleted_secret(name)
    assert name not in {d.name for d in client.list_deleted_secrets()}
    new = client.set_secret(name, "after-purge")
    assert new.properties.version != old.properties.version
    assert versions_of(client, name) == {new.properties.version}


def test_purge_raw_is_204_and_purging_live_secret_is_404(raw, name):
    raw.set_secret(name, "x")
    r = raw.delete(f"/deletedsecrets/{name}")
    assert_kv_error(r, 404)
    assert raw.delete(f"/secrets/{name}").status_code == 200
    r = raw.delete(f"/deletedsecrets/{name}")
    assert r.status_code == 204, f"{r.status_code} {r.text}"
    assert r.content == b""
    assert_kv_error(raw.delete(f"/deletedsecrets/{name}"), 404)


def test_set_on_soft_deleted_name_conflicts(client, name):
    client.set_secret(name, "x")
    delete_now(client, name)
    for n in (name, name.upper()):
        with pytest.raises(ResourceExistsError) as ei:
            client.set_secret(n, "y")
        err = ei.value
        assert err.status_code == 409
        assert err.error.code == "Conflict"
        assert (err.error.innererror or {}).get("code") == "ObjectIsDeletedButRecoverable"


def test_names_are_case_insensitive(client):
    mixed = "CaseMix-" + uniq("n")
    client.set_secret(mixed, "v1")
    assert client.get_secret(mixed.lower()).value == "v1"
    client.set_secret(mixed.upper(), "v2")
    assert client.get_secret(mixed).value == "v2"
    assert len(versions_of(client, mixed.lower())) == 2
    listed = [p for p in client.list_properties_of_secrets() if p.name.lower() == mixed.lower()]
    assert len(listed) == 1
    delete_now(client, mixed.lower())
    assert client.get_deleted_secret(mixed.upper()).name.lower() == mixed.lower()
    recover_now(client, mixed.upper())
    assert client.get_secret(mixed).value == "v2"


# ---------------------------------------------------------------------------- backup / restore
def test_backup_restore_between_vaults(server, client, other_client, raw, name):
    s = [client.set_secret(name, f"backup-v{i}") for i in range(3)]
    client.update_secret_properties(name, content_type="text/x-test", tags={"b": "1"})
    blob = client.backup_secret(name)
    assert isinstance(blob, bytes) and len(blob) > 0

    r = raw.post(f"/secrets/{name}/backup")
    assert r.status_code == 200, r.text
    value = r.json()["value"]
    assert re.fullmatch(r"[A-Za-z0-9_-]+={0,2}", value), "backup value is not base64url"
    b64url_decode(value)

    restored = other_client.restore_secret_backup(blob)
    assert restored.name.lower() == name.lower()
    assert restored.vault_url.rstrip("/") == server.vault_url("other")
    want = {x.properties.version: x.value for x in s}
    assert versions_of(other_client, name) == set(want)
    for version, val in want.items():
        assert other_client.get_secret(name, version).value == val
    latest = other_client.get_secret(name)
    assert latest.value == "backup-v2" and latest.properties.version == s[2].properties.version
    assert latest.properties.content_type == "text/x-test"
    assert latest.properties.tags == {"b": "1"}
    assert latest.id == f"{server.vault_url('other')}/secrets/{name}/{s[2].properties.version}"

    # restoring where the name exists → 409 (target vault and source vault)
    for c in (other_client, client):
        with pytest.raises(ResourceExistsError) as ei:
            c.restore_secret_backup(blob)
        assert ei.value.status_code == 409

    # soft-deleted name in the target → 409 as well
    delete_now(other_client, name)
    with pytest.raises(ResourceExistsError):
        other_client.restore_secret_backup(blob)

    # after purge in the source vault, restore there brings back the same versions
    delete_now(client, name)
    client.purge_deleted_secret(name)
    client.restore_secret_backup(blob)
    assert versions_of(client, name) == set(want)
    assert client.get_secret(name, s[0].properties.version).value == "backup-v0"


def test_backup_missing_secret_is_404(client, name):
    with pytest.raises(ResourceNotFoundError):
        client.backup_secret(name)


# ---------------------------------------------------------------------------- vault settings
def test_default_vault_recovery_attributes(client, demo_info, name):
    assert demo_info["retention_days"] == 90
    assert demo_info["purge_protection"] is False
    s = client.set_secret(name, "x")
    assert s.properties.recoverable_days == 90
    assert s.properties.recovery_level == "Recoverable+Purgeable"


def test_purge_protection_forbids_purge(server):
    vname, info, c = make_vault(server, "--purge-protection")
    assert info["name"] == vname
    assert info["purge_protection"] is True
    n = uniq("pp")
    s = c.set_secret(n, "protected")
    level = expected_level(info["retention_days"], True)
    assert s.properties.recovery_level == level
    deleted = delete_now(c, n)
    assert deleted.properties.recovery_level == level
    with pytest.raises(HttpResponseError) as ei:
        c.purge_deleted_secret(n)
    assert ei.value.status_code == 403
    assert ei.value.error.code == "Forbidden"
    assert c.get_deleted_secret(n).name == n      # still there
    recover_now(c, n)
    assert c.get_secret(n).value == "protected"


@pytest.mark.parametrize("purge_protection", [False, True])
def test_retention_days_7(server, purge_protection):
    flags = ["--retention-days", "7"] + (["--purge-protection"] if purge_protection else [])
    vname, info, c = make_vault(server, *flags)
    assert info["retention_days"] == 7
    assert info["purge_protection"] is purge_protection
    n = uniq("ret")
    s = c.set_secret(n, "x")
    level = "CustomizedRecoverable" + ("" if purge_protection else "+Purgeable")
    assert s.properties.recoverable_days == 7
    assert s.properties.recovery_level == level
    d = delete_now(c, n)
    assert d.properties.recoverable_days == 7
    assert d.properties.recovery_level == level
    assert d.scheduled_purge_date - d.deleted_date == dt.timedelta(days=7)


def test_vault_list_and_delete_via_cli(server):
    vname, info, _ = make_vault(server)
    assert info["retention_days"] == 90 and info["purge_protection"] is False
    assert vname in {v["name"] for v in server.admin("vault", "list")}
    server.admin_ok("vault", "delete", vname)
    assert vname not in {v["name"] for v in server.admin("vault", "list")}


# ---------------------------------------------------------------------------- wire details
def test_wire_format_of_set_and_get(server, raw, name):
    r = raw.put(f"/secrets/{name}", json={
        "value": "wire", "contentType": "text/plain", "tags": {"a": "b"},
        "attributes": {"enabled": True, "nbf": 1600000000, "exp": 2600000000},
    })
    assert r.status_code == 200, r.text
    assert r.headers.get("Content-Type", "").startswith("application/json")
    b = r.json()
    assert b["value"] == "wire"
    assert b["contentType"] == "text/plain" and b["tags"] == {"a": "b"}
    version = version_of(b["id"])
    assert HEX32.match(version)
    assert b["id"] == f"{server.vault_url()}/secrets/{name}/{version}"
    a = b["attributes"]
    assert a["enabled"] is True
    assert a["nbf"] == 1600000000 and a["exp"] == 2600000000
    for k in ("created", "updated"):
        assert isinstance(a[k], int) and abs(a[k] - time.time()) < 300
    assert isinstance(a["recoverableDays"], int)
    assert isinstance(a["recoveryLevel"], str)
    # empty version segment = latest
    g = raw.get(f"/secrets/{name}/")
    assert g.status_code == 200 and g.json()["id"] == b["id"] and g.json()["value"] == "wire"
    g = raw.get(f"/secrets/{name}/{version}")
    assert g.status_code == 200 and g.json()["value"] == "wire"
    p = raw.patch(f"/secrets/{name}/", json={"contentType": "x/y"})
    assert p.status_code == 200 and p.json()["contentType"] == "x/y"
    assert "value" not in p.json()


@pytest.mark.parametrize("version", ["7.0", "7.1", "7.4", "7.6", "2025-07-01", "2026-04-01", "2030-01-01"])
def test_api_versions_accepted(raw, version):
    n = uniq("apiv")
    r = raw.put(f"/secrets/{n}", json={"value": "v"}, api_version=version)
    assert r.status_code == 200, f"api-version={version}: {r.status_code} {r.text}"
    g = raw.get(f"/secrets/{n}", api_version=version)
    assert g.status_code == 200 and g.json()["value"] == "v"


@pytest.mark.parametrize("version", [None, "", "garbage", "latest", "2026-13-45x"])
def test_api_versions_rejected(raw, name, version):
    raw.set_secret(name, "v")
    assert_kv_error(raw.get(f"/secrets/{name}", api_version=version), 400, "BadParameter")
    assert_kv_error(raw.put(f"/secrets/{name}", json={"value": "w"}, api_version=version), 400, "BadParameter")
    # a rejected set did not create a version
    assert raw.get(f"/secrets/{name}").json()["value"] == "v"


def test_request_id_headers(raw, name):
    raw.set_secret(name, "v")
    for path, status in ((f"/secrets/{name}", 200), (f"/secrets/{uniq('nope')}", 404)):
        cid = uniq("cid")
        r = raw.get(path, headers={"x-ms-client-request-id": cid})
        assert r.status_code == status
        assert r.headers.get("x-ms-client-request-id") == cid
        assert r.headers.get("x-ms-request-id"), "x-ms-request-id missing"
    r1, r2 = raw.get(f"/secrets/{name}"), raw.get(f"/secrets/{name}")
    assert r1.headers.get("x-ms-request-id") != r2.headers.get("x-ms-request-id")


def test_double_slashes_collapse(raw, name):
    first = raw.set_secret(name, "slashy")
    version = version_of(first["id"])
    for path in (f"/secrets//{name}", f"//secrets/{name}/", f"/secrets/{name}//{version}",
                 f"/secrets//{name}//"):
        r = raw.get(path)
        assert r.status_code == 200, f"{path}: {r.status_code} {r.text}"
        assert r.json()["value"] == "slashy"
    r = raw.put(f"/secrets//{name}", json={"value": "slashy2"})
    assert r.status_code == 200, r.text
    assert raw.get(f"/secrets/{name}").json()["value"] == "slashy2"


# ---------------------------------------------------------------------------- persistence
def test_restart_keeps_credentials_and_data(fresh_server):
    ks = fresh_server
    c = ks.secret_client()
    n, gone = uniq("persist"), uniq("gone")
    v1 = c.set_secret(n, "persist-1", tags={"t": "1"}).properties.version
    v2 = c.set_secret(n, "persist-2").properties.version
    c.set_secret(gone, "x")
    delete_now(c, gone)
    extra_vault = uniq("keep")
    ks.create_vault(extra_vault)
    ks.secret_client(extra_vault).set_secret("in-extra", "extra-value")
    creds_before = dict(ks.creds)
    ca_before = (ks.data_dir / "ca.pem").read_bytes()

    ks.stop()
    ks.start()

    assert ks.creds == creds_before
    assert (ks.data_dir / "ca.pem").read_bytes() == ca_before
    # the old client (cached challenge + cached token) keeps working
    assert c.get_secret(n).value == "persist-2"
    # a new credential works too
    c2 = ks.secret_client()
    assert c2.get_secret(n, v1).value == "persist-1"
    assert c2.get_secret(n, v1).properties.tags == {"t": "1"}
    assert versions_of(c2, n) == {v1, v2}
    assert c2.get_deleted_secret(gone).name == gone
    assert extra_vault in {v["name"] for v in ks.admin("vault", "list")}
    assert ks.secret_client(extra_vault).get_secret("in-extra").value == "extra-value"
    # and writes after the restart work
    assert c2.set_secret(n, "persist-3").properties.version not in (v1, v2)
