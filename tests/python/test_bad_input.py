"""Bad input to the secrets API, sent raw with a valid bearer token.

Every case must answer 400 with the Key Vault error body {"error":{"code":"BadParameter","message":…}}
(never 500, never a crash): malformed JSON, non-object bodies, wrong JSON types, values over 25600
bytes, invalid names (charset, 128 chars) on every route, bad restore blobs, bad maxresults, and
bodies over 1 MB (400 or 413 with an error body). Rejected writes must not create anything. Unknown
JSON fields are ignored (newer SDKs send them). Boundaries (127-char name, 25600-byte value) pass.
"""

from __future__ import annotations

import json
import os

import pytest
import requests

from keystead_helpers import assert_kv_error, b64url, uniq

MAX_VALUE = 25600


def send(raw, method, path, body):
    """bytes → sent verbatim as application/json; anything else → JSON-encoded."""
    if isinstance(body, bytes):
        return raw.request(method, path, data=body, headers={"Content-Type": "application/json"})
    return raw.request(method, path, json=body)


def assert_bad(r):
    return assert_kv_error(r, 400, "BadParameter")


def assert_absent(raw, name):
    r = raw.get(f"/secrets/{name}")
    assert r.status_code == 404, f"rejected write left a secret behind: {r.status_code} {r.text[:200]}"


BAD_SET_BODIES = {
    "malformed-json": b'{"value": "x"',
    "trailing-garbage": b'{"value": "x"} xyz',
    "not-json": b"hello",
    "empty-body": b"",
    "json-null": b"null",
    "json-array": b"[]",
    "json-string": b'"x"',
    "json-number": b"5",
    "invalid-utf8": b'{"value": "\xff\xfe"}',
    "value-missing": {"contentType": "text/plain"},
    "value-null": {"value": None},
    "value-number": {"value": 5},
    "value-object": {"value": {"a": 1}},
    "value-bool": {"value": True},
    "value-array": {"value": ["x"]},
    "enabled-string": {"value": "x", "attributes": {"enabled": "yes"}},
    "enabled-number": {"value": "x", "attributes": {"enabled": 1}},
    "attributes-array": {"value": "x", "attributes": []},
    "attributes-string": {"value": "x", "attributes": "enabled"},
    "tags-array": {"value": "x", "tags": []},
    "tags-string": {"value": "x", "tags": "a=b"},
    "tag-value-number": {"value": "x", "tags": {"a": 5}},
    "tag-value-object": {"value": "x", "tags": {"a": {"b": "c"}}},
    "nbf-string": {"value": "x", "attributes": {"nbf": "x"}},
    "exp-string": {"value": "x", "attributes": {"exp": "tomorrow"}},
    "exp-bool": {"value": "x", "attributes": {"exp": True}},
    "contentType-number": {"value": "x", "contentType": 5},
    "value-too-large": {"value": "a" * (MAX_VALUE + 1)},
    "value-too-large-utf8": {"value": "é" * (MAX_VALUE // 2 + 1)},   # 25602 bytes
}


@pytest.mark.parametrize("case", sorted(BAD_SET_BODIES))
def test_bad_set_bodies(raw, case):
    name = uniq("bad")
    assert_bad(send(raw, "PUT", f"/secrets/{name}", BAD_SET_BODIES[case]))
    assert_absent(raw, name)


BAD_PATCH_BODIES = {
    "malformed-json": b'{"contentType": ',
    "json-array": b"[]",
    "enabled-string": {"attributes": {"enabled": "yes"}},
    "tags-array": {"tags": []},
    "nbf-string": {"attributes": {"nbf": "x"}},
    "exp-string": {"attributes": {"exp": "x"}},
    "contentType-number": {"contentType": 5},
}


@pytest.fixture(scope="module")
def patch_target(raw):
    name = uniq("patchme")
    raw.set_secret(name, "patch-value", contentType="text/plain", tags={"k": "v"})
    return name


@pytest.mark.parametrize("case", sorted(BAD_PATCH_BODIES))
def test_bad_patch_bodies(raw, patch_target, case):
    assert_bad(send(raw, "PATCH", f"/secrets/{patch_target}/", BAD_PATCH_BODIES[case]))
    after = raw.get(f"/secrets/{patch_target}").json()
    assert after["value"] == "patch-value"
    assert after["contentType"] == "text/plain" and after["tags"] == {"k": "v"}
    assert after["attributes"]["enabled"] is True


def test_value_size_boundary(raw):
    name = uniq("big")
    body = raw.set_secret(name, "b" * MAX_VALUE)
    assert len(body["value"]) == MAX_VALUE
    assert len(raw.get(f"/secrets/{name}").json()["value"]) == MAX_VALUE
    assert_bad(raw.put(f"/secrets/{name}", json={"value": "b" * (MAX_VALUE + 1)}))
    versions = raw.get(f"/secrets/{name}/versions").json()["value"]
    assert len(versions) == 1


def send_oversized(server, method, path):
    """Send a 2 MB JSON body on a connection of its own; return the response (or fail clearly)."""
    payload = json.dumps({"value": "z" * (2 * 1024 * 1024)}).encode()
    fresh = server.raw("demo")
    try:
        return fresh.request(method, path, data=payload, headers={"Content-Type": "application/json"},
                             timeout=60)
    except requests.ConnectionError as e:
        pytest.fail(f"{method} {path} with a 2 MB body: no HTTP response, the server dropped the "
                    f"connection ({type(e).__name__}: {e})")


@pytest.mark.parametrize("method,path", [
    ("PUT", "/secrets/{n}"),
    ("PATCH", "/secrets/{n}/"),
    ("POST", "/secrets/restore"),
])
def test_body_over_1mb_rejected(server, raw, method, path):
    name = uniq("huge")
    raw.set_secret(name, "orig")
    r = send_oversized(server, method, path.format(n=name))
    assert r.status_code in (400, 413), (
        f"{method} with a 2 MB body answered {r.status_code} (request body length sent: "
        f"{len(r.request.body or b'')}, response headers {dict(r.headers)}): {r.text[:300]}")
    assert_kv_error(r, (400, 413))
    assert raw.get(f"/secrets/{name}").json()["value"] == "orig"
    assert len(raw.get(f"/secrets/{name}/versions").json()["value"]) == 1


REJECTED_REQUESTS = {
    "oversized-body": lambda n: ("PUT", f"/secrets/{n}", {},
                                 json.dumps({"value": "z" * (2 * 1024 * 1024)}).encode()),
    "bad-api-version": lambda n: ("PUT", f"/secrets/{n}", {"api_version": "garbage"}, b'{"value": "x"}'),
    "bad-name": lambda n: ("PUT", "/secrets/bad_name", {}, b'{"value": "x"}'),
    "malformed-json": lambda n: ("PUT", f"/secrets/{n}", {}, b'{"value": '),
    "value-too-large": lambda n: ("PUT", f"/secrets/{n}", {}, json.dumps({"value": "v" * 30000}).encode()),
}


@pytest.mark.parametrize("kind", sorted(REJECTED_REQUESTS))
def test_connection_usable_after_rejected_request(server, kind):
    """After answering an error without reading the body, the server either keeps the keep-alive
    connection usable or says `Connection: close`; the client's next request on its pooled
    connection must not hit a connection the server has silently closed (azure-core does not
    retry a POST/PATCH on such a read error)."""
    tok = server.token()
    problems = []
    for i in range(8):                       # bounded: a few tries, each on a new connection
        raw = server.raw("demo", tok, keep_after_error=True)
        name = uniq("keepalive")
        raw.set_secret(name, "orig")
        method, path, kw, body = REJECTED_REQUESTS[kind](name)
        try:
            r = raw.request(method, path, data=body, headers={"Content-Type": "application/json"},
                            timeout=60, **kw)
        except requests.ConnectionError as e:
            problems.append(f"try {i}: rejected request got no response ({type(e).__name__})")
            continue
        if r.status_code < 400:
            problems.append(f"try {i}: not rejected: {r.status_code}")
            continue
        closing = "close" in r.headers.get("Connection", "").lower()
        try:
            nxt = raw.get(f"/secrets/{name}")
            assert nxt.status_code == 200
        except requests.ConnectionError as e:
            problems.append(f"try {i}: {r.status_code} (Connection: {r.headers.get('Connection')}) then "
                            f"the next request on the kept-alive connection failed ({type(e).__name__})"
                            + (" although the server said close" if closing else ""))
    assert not problems, "; ".join(problems)


BAD_NAMES = {
    "underscore": "bad_name",
    "128-chars": "a" * 128,
    "dot": "bad.name",
    "space": "bad%20name",
    "non-ascii": "%C3%BCber",
    "star": "bad*name",
}


@pytest.mark.parametrize("label", sorted(BAD_NAMES))
def test_bad_name_on_set(raw, label):
    assert_bad(raw.put(f"/secrets/{BAD_NAMES[label]}", json={"value": "x"}))


@pytest.mark.parametrize("route", [
    ("GET", "/secrets/{n}"),
    ("GET", "/secrets/{n}/"),
    ("PATCH", "/secrets/{n}/"),
    ("DELETE", "/secrets/{n}"),
    ("GET", "/secrets/{n}/versions"),
    ("POST", "/secrets/{n}/backup"),
    ("GET", "/deletedsecrets/{n}"),
    ("DELETE", "/deletedsecrets/{n}"),
    ("POST", "/deletedsecrets/{n}/recover"),
])
@pytest.mark.parametrize("label", ["underscore", "128-chars"])
def test_bad_name_on_every_route(raw, route, label):
    method, path = route
    body = {"contentType": "x"} if method == "PATCH" else None
    r = raw.request(method, path.format(n=BAD_NAMES[label]), json=body)
    assert_bad(r)


def test_name_boundary_127_chars(raw):
    name = ("n" + uniq("x").replace("-", "") + "a" * 127)[:127]
    assert len(name) == 127
    raw.set_secret(name, "long-name")
    assert raw.get(f"/secrets/{name}").json()["value"] == "long-name"
    assert raw.get(f"/secrets/{name.upper()}").json()["value"] == "long-name"


BAD_RESTORE_BODIES = {
    "malformed-json": b'{"value": ',
    "empty-object": {},
    "value-number": {"value": 5},
    "value-empty": {"value": ""},
    "not-base64": {"value": "!!!not*base64!!!"},
    "random-bytes": {"value": b64url(os.urandom(300))},
    "base64-json-garbage": {"value": b64url(b'{"hello": "world"}')},
    "json-array": b"[]",
}


@pytest.mark.parametrize("case", sorted(BAD_RESTORE_BODIES))
def test_bad_restore_bodies(raw, case):
    assert_bad(send(raw, "POST", "/secrets/restore", BAD_RESTORE_BODIES[case]))


def backup_and_purge(raw, value):
    name = uniq("tamper")
    raw.set_secret(name, value)
    r = raw.post(f"/secrets/{name}/backup")
    assert r.status_code == 200, r.text
    blob = r.json()["value"]
    assert raw.delete(f"/secrets/{name}").status_code == 200
    assert raw.delete(f"/deletedsecrets/{name}").status_code == 204
    return name, blob


def test_truncated_backup_blob_rejected(raw):
    name, blob = backup_and_purge(raw, "truncate-value")
    for candidate in (blob[: len(blob) // 3], blob[: len(blob) // 2], blob[:-8]):
        assert_bad(raw.post("/secrets/restore", json={"value": candidate}))
    assert_absent(raw, name)
    ok = raw.post("/secrets/restore", json={"value": blob})
    assert ok.status_code == 200, ok.text
    assert raw.get(f"/secrets/{name}").json()["value"] == "truncate-value"


def test_modified_backup_blob_rejected(raw):
    """A backup blob is opaque and integrity-protected: a flipped character must not restore."""
    name, blob = backup_and_purge(raw, "flip-value")
    mid = len(blob) // 2
    flipped = blob[:mid] + ("A" if blob[mid] != "A" else "B") + blob[mid + 1:]
    assert_bad(raw.post("/secrets/restore", json={"value": flipped}))
    assert_absent(raw, name)


@pytest.mark.parametrize("value", ["26", "abc", "-1", "99999999999999999999999", "1.5"])
def test_bad_maxresults(raw, value):
    for path in ("/secrets", "/deletedsecrets"):
        assert_bad(raw.get(path, params={"maxresults": value}))


def test_unknown_json_fields_are_ignored(raw):
    name = uniq("future")
    body = {
        "value": "future-proof",
        "someFutureField": {"nested": [1, 2, {"x": None}]},
        "attributes": {"enabled": True, "futureFlag": "y", "exportable": False},
        "previousVersion": "ignored",
    }
    r = raw.put(f"/secrets/{name}", json=body)
    assert r.status_code == 200, r.text
    assert "someFutureField" not in r.json()
    assert raw.get(f"/secrets/{name}").json()["value"] == "future-proof"
    p = raw.patch(f"/secrets/{name}/", json={"contentType": "a/b", "newKnob": 1,
                                             "attributes": {"futureFlag": 1}})
    assert p.status_code == 200, p.text
    assert p.json()["contentType"] == "a/b"

