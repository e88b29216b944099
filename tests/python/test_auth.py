"""Authentication and authorization of Keystead.

Covers: the 401 challenge (exact WWW-Authenticate, issued before any name/body validation), garbage,
tampered, unsigned and wrong-audience bearer tokens, the token endpoint (success shape, wrong secret,
unknown client), the openid-configuration document, the dev start-up output and credential files,
the SDK with a wrong client secret (ClientAuthenticationError), RBAC through the admin CLI
(Key Vault Secrets User, Key Vault Reader, no role, secret-scoped assignments, assignments on another
vault, role remove, principal delete) and admin CLI error exits.
"""

from __future__ import annotations

import json
import os
import re
import shlex

import pytest
import requests
from azure.core.exceptions import ClientAuthenticationError, HttpResponseError

from keystead_helpers import assert_kv_error, b64url, b64url_decode, uniq


# ---------------------------------------------------------------------------- helpers
def expected_challenge(server) -> str:
    return (f'Bearer authorization="{server.creds["authority_host"]}/{server.creds["tenant_id"]}", '
            f'resource="{server.resource}"')


def assert_challenge(server, r: requests.Response):
    assert r.status_code == 401, f"expected 401, got {r.status_code}: {r.text[:300]}"
    assert r.headers.get("WWW-Authenticate") == expected_challenge(server), r.headers.get("WWW-Authenticate")
    assert "Retry-After" not in r.headers
    assert_kv_error(r, 401)


def assert_rbac_denied(exc: HttpResponseError, action_word: str):
    assert exc.status_code == 403, f"expected 403, got {exc.status_code}"
    assert exc.error is not None, "403 without a Key Vault error body"
    assert exc.error.code == "Forbidden"
    assert (exc.error.innererror or {}).get("code") == "ForbiddenByRbac"
    assert re.search(action_word, exc.error.message or "", re.I), \
        f"message does not name the action ({action_word}): {exc.error.message!r}"


def jwt_parts(token: str):
    parts = token.split(".")
    if len(parts) != 3:
        return None
    try:
        header = json.loads(b64url_decode(parts[0]))
        payload = json.loads(b64url_decode(parts[1]))
    except ValueError:
        return None
    return header, payload, parts


def flip_char(s: str, i: int) -> str:
    c = s[i]
    return s[:i] + ("A" if c != "A" else "B") + s[i + 1:]


@pytest.fixture(scope="module")
def seeded(server, client):
    """A secret in `demo` written by the administrator."""
    name = uniq("authseed")
    client.set_secret(name, "seeded-value")
    return name


def principal_with_role(server, role=None, vault="demo", scope=None):
    p = server.create_principal()
    for k in ("client_id", "client_secret", "tenant_id", "name"):
        assert p.get(k), f"principal create output lacks {k}: {p}"
    assignment = server.assign_role(p["client_id"], role, vault, scope) if role else None
    return p, assignment


# ---------------------------------------------------------------------------- challenge
def test_challenge_header_exact(server):
    r = requests.get(f"{server.vault_url()}/secrets", params={"api-version": "2026-04-01"},
                     verify=server.ca, timeout=30)
    assert_challenge(server, r)
    assert f":{server.port}" in r.headers["WWW-Authenticate"].split("resource=", 1)[1]
    assert r.json()["error"]["code"] == "Unauthorized"


@pytest.mark.parametrize("method,path,body", [
    ("PUT", "/secrets/probe", b""),                 # exactly what the SDK's first request looks like
    ("PUT", "/secrets/bad_name", b""),              # bad name: still 401 first
    ("PUT", "/secrets/probe", b"{not json"),        # bad body: still 401 first
    ("PUT", "/secrets/" + "a" * 200, b'{"value": 5}'),
    ("GET", "/secrets/probe/", None),
    ("DELETE", "/secrets/probe", None),
    ("POST", "/secrets/restore", b"[]"),
    ("GET", "/deletedsecrets", None),
])
def test_missing_token_gets_challenge_before_validation(server, method, path, body):
    headers = {"Content-Type": "application/json"}
    if body == b"":
        headers["Content-Length"] = "0"
    r = requests.request(method, f"{server.vault_url()}{path}", params={"api-version": "2026-04-01"},
                         data=body, headers=headers, verify=server.ca, timeout=30)
    assert_challenge(server, r)


@pytest.mark.parametrize("authz", ["Bearer garbage", "Bearer ", "Bearer a.b.c", "Basic dXNlcjpwYXNz",
                                   "garbage"])
def test_garbage_token_is_401(server, authz, seeded):
    r = requests.get(f"{server.vault_url()}/secrets/{seeded}", params={"api-version": "2026-04-01"},
                     headers={"Authorization": authz}, verify=server.ca, timeout=30)
    assert r.status_code == 401, f"{authz!r}: {r.status_code} {r.text[:200]}"
    assert r.headers.get("WWW-Authenticate", "").startswith("Bearer authorization="), r.headers
    assert "seeded-value" not in r.text


def forge_es256(header_b64: str, payload_b64: str) -> str:
    """Sign header.payload with a freshly generated P-256 key (JWS r||s): right shape, wrong key."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

    key = ec.generate_private_key(ec.SECP256R1())
    signing_input = f"{header_b64}.{payload_b64}".encode()
    r, s = decode_dss_signature(key.sign(signing_input, ec.ECDSA(hashes.SHA256())))
    return f"{header_b64}.{payload_b64}.{b64url(r.to_bytes(32, 'big') + s.to_bytes(32, 'big'))}"


def tampered_tokens(token: str, server) -> dict:
    out = {
        "appended": token + "x",
        "truncated": token[: len(token) // 2],
        "middle-flipped": flip_char(token, len(token) // 2),
    }
    parsed = jwt_parts(token)
    if parsed:
        header, payload, parts = parsed
        sig = parts[2]
        evil = dict(payload, aud="https://evil.localhost:1")
        out["aud-changed-same-sig"] = ".".join([parts[0], b64url(json.dumps(evil).encode()), sig])
        later = dict(payload, exp=int(payload.get("exp", 0)) + 10 ** 7)
        out["exp-changed-same-sig"] = ".".join([parts[0], b64url(json.dumps(later).encode()), sig])
        none_hdr = b64url(json.dumps({"alg": "none", "typ": "JWT"}).encode())
        out["alg-none"] = f"{none_hdr}.{parts[1]}."
        out["alg-none-nosig"] = f"{none_hdr}.{parts[1]}"
        hs_hdr = b64url(json.dumps(dict(header, alg="HS256")).encode())
        out["alg-hs256-same-sig"] = f"{hs_hdr}.{parts[1]}.{sig}"
        out["sig-stripped"] = f"{parts[0]}.{parts[1]}."
        out["forged-es256-own-key"] = forge_es256(parts[0], b64url(json.dumps(payload).encode()))
        if len(sig) > 8:
            out["sig-flipped"] = f"{parts[0]}.{parts[1]}.{flip_char(sig, len(sig) // 2)}"
    return out


def test_tampered_tokens_rejected(server, seeded):
    token = server.token()
    ok = requests.get(f"{server.vault_url()}/secrets/{seeded}", params={"api-version": "2026-04-01"},
                      headers={"Authorization": f"Bearer {token}"}, verify=server.ca, timeout=30)
    assert ok.status_code == 200, ok.text
    for label, bad in tampered_tokens(token, server).items():
        r = requests.get(f"{server.vault_url()}/secrets/{seeded}", params={"api-version": "2026-04-01"},
                         headers={"Authorization": f"Bearer {bad}"}, verify=server.ca, timeout=30)
        assert r.status_code == 401, f"{label}: accepted with {r.status_code}"
        assert "seeded-value" not in r.text


def test_token_for_another_audience_not_accepted(server, seeded):
    r = server.token_response(scope=f"https://elsewhere.localhost:{server.port}/.default")
    if r.status_code != 200:
        assert 400 <= r.status_code < 500 and "error" in r.json(), r.text
        return
    tok = r.json()["access_token"]
    g = requests.get(f"{server.vault_url()}/secrets/{seeded}", params={"api-version": "2026-04-01"},
                     headers={"Authorization": f"Bearer {tok}"}, verify=server.ca, timeout=30)
    assert g.status_code == 401, f"token for another audience accepted: {g.status_code}"


# ---------------------------------------------------------------------------- authority
def test_token_endpoint_success_shape(server):
    r = server.token_response()
    assert r.status_code == 200, r.text
    body = r.json()
    assert isinstance(body["access_token"], str) and len(body["access_token"]) > 20
    assert body["expires_in"] == 3600
    assert body["token_type"] == "Bearer"
    assert server.creds["client_secret"] not in r.text


def test_token_endpoint_ignores_msal_extras(server):
    form = {
        "client_id": server.creds["client_id"], "grant_type": "client_credentials", "client_info": "1",
        "client_secret": server.creds["client_secret"],
        "claims": '{"access_token": {"xms_cc": {"values": ["CP1"]}}}',
        "scope": f"{server.resource}/.default",
    }
    r = requests.post(server.token_url(), data=form, verify=server.ca, timeout=30,
                      headers={"x-client-sku": "MSAL.Python", "x-ms-lib-capability": "retry-after, h429"})
    assert r.status_code == 200, r.text


def test_token_endpoint_wrong_secret(server):
    r = server.token_response(client_secret="definitely-wrong")
    assert r.status_code == 401, r.text
    assert r.json()["error"] == "invalid_client"
    assert "access_token" not in r.json()


def test_token_endpoint_unknown_client(server):
    r = server.token_response(client_id="00000000-dead-beef-0000-000000000000", client_secret="x")
    assert r.status_code in (400, 401), r.text
    assert r.json().get("error") in ("invalid_client", "unauthorized_client")


@pytest.mark.parametrize("form", [
    {"grant_type": "password"},
    {"grant_type": None},
    {"client_secret": None},
])
def test_token_endpoint_bad_requests(server, form):
    base = {"grant_type": "client_credentials", "client_id": server.creds["client_id"],
            "client_secret": server.creds["client_secret"], "scope": f"{server.resource}/.default"}
    for k, v in form.items():
        if v is None:
            base.pop(k)
        else:
            base[k] = v
    r = requests.post(server.token_url(), data=base, verify=server.ca, timeout=30)
    assert r.status_code in (400, 401), f"{r.status_code} {r.text}"
    assert "error" in r.json() and "access_token" not in r.json()


def test_openid_configuration(server):
    tenant = server.creds["tenant_id"]
    r = requests.get(f"{server.base_url}/{tenant}/v2.0/.well-known/openid-configuration",
                     verify=server.ca, timeout=30)
    assert r.status_code == 200, r.text
    doc = r.json()
    assert doc["token_endpoint"] == f"{server.base_url}/{tenant}/oauth2/v2.0/token"
    assert isinstance(doc["authorization_endpoint"], str) and doc["authorization_endpoint"].startswith("https://")
    assert isinstance(doc.get("issuer"), str) and doc["issuer"]


def test_sdk_with_wrong_secret_raises_client_auth_error(server, seeded):
    cred = server.credential(client_secret="not-the-secret")
    c = server.secret_client("demo", cred)
    with pytest.raises(ClientAuthenticationError):
        c.get_secret(seeded)


def test_dev_credentials_and_exports(server):
    port = server.port
    c = server.creds
    assert set(c) >= {"vault_url", "tenant_id", "client_id", "client_secret", "authority_host", "ca_cert"}
    assert c["vault_url"].rstrip("/") == f"https://demo.vault.localhost:{port}"
    assert c["authority_host"].rstrip("/") == f"https://localhost:{port}"
    assert os.path.isabs(c["ca_cert"]) and os.path.samefile(c["ca_cert"], server.data_dir / "ca.pem")
    admin = json.loads((server.data_dir / "admin.json").read_text())
    assert set(admin) >= {"endpoint", "token", "ca_cert"}
    exports = {}
    for line in server.stdout_text().splitlines():
        if line.startswith("export "):
            k, _, v = line[len("export "):].partition("=")
            exports[k.strip()] = shlex.split(v)[0] if v.strip() else ""
    assert exports.get("AZURE_TENANT_ID") == c["tenant_id"]
    assert exports.get("AZURE_CLIENT_ID") == c["client_id"]
    assert exports.get("AZURE_CLIENT_SECRET") == c["client_secret"]
    assert exports.get("AZURE_AUTHORITY_HOST", "").rstrip("/") == c["authority_host"].rstrip("/")
    assert exports.get("VAULT_URL", "").rstrip("/") == c["vault_url"].rstrip("/")
    assert exports.get("REQUESTS_CA_BUNDLE") and os.path.samefile(exports["REQUESTS_CA_BUNDLE"], c["ca_cert"])
    # the server never logs the client secret to stderr
    assert c["client_secret"] not in server.stderr_path.read_text(errors="replace")


# ---------------------------------------------------------------------------- RBAC
def test_secrets_user_can_read_but_not_write(server, seeded):
    p, assignment = principal_with_role(server, "Key Vault Secrets User")
    assert assignment.get("id")
    c = server.principal_client(p)
    assert c.get_secret(seeded).value == "seeded-value"
    assert seeded in {x.name for x in c.list_properties_of_secrets()}
    assert len(list(c.list_properties_of_secret_versions(seeded))) >= 1
    with pytest.raises(HttpResponseError) as ei:
        c.set_secret(uniq("denied"), "nope")
    assert_rbac_denied(ei.value, "set")
    with pytest.raises(HttpResponseError) as ei:
        c.begin_delete_secret(seeded)
    assert_rbac_denied(ei.value, "delete")
    with pytest.raises(HttpResponseError) as ei:
        c.backup_secret(seeded)
    assert_rbac_denied(ei.value, "backup")
    assert server.secret_client().get_secret(seeded).value == "seeded-value"


def test_reader_lists_but_cannot_read_values(server, seeded):
    p, _ = principal_with_role(server, "Key Vault Reader")
    c = server.principal_client(p)
    assert seeded in {x.name for x in c.list_properties_of_secrets()}
    with pytest.raises(HttpResponseError) as ei:
        c.get_secret(seeded)
    assert_rbac_denied(ei.value, "get")
    with pytest.raises(HttpResponseError) as ei:
        c.set_secret(uniq("denied"), "x")
    assert ei.value.status_code == 403


def test_principal_without_role_is_denied(server, seeded):
    p, _ = principal_with_role(server, None)
    c = server.principal_client(p)
    for call in (lambda: c.get_secret(seeded), lambda: list(c.list_properties_of_secrets()),
                 lambda: c.set_secret(uniq("x"), "y")):
        with pytest.raises(HttpResponseError) as ei:
            call()
        assert ei.value.status_code == 403
        assert ei.value.error.code == "Forbidden"
        assert (ei.value.error.innererror or {}).get("code") == "ForbiddenByRbac"


def test_raw_rbac_denial_body(server, seeded):
    p, _ = principal_with_role(server, "Key Vault Secrets User")
    tok = server.token(p["client_id"], p["client_secret"], p["tenant_id"])
    raw = server.raw("demo", tok)
    r = raw.put(f"/secrets/{uniq('denied')}", json={"value": "x"})
    assert_kv_error(r, 403, "Forbidden", "ForbiddenByRbac")
    assert raw.get(f"/secrets/{seeded}").status_code == 200


def test_secret_scoped_assignment(server, client):
    allowed, other = uniq("scoped"), uniq("unscoped")
    client.set_secret(allowed, "ok")
    client.set_secret(other, "no")
    p, _ = principal_with_role(server, "Key Vault Secrets User", scope=f"/secrets/{allowed}")
    c = server.principal_client(p)
    assert c.get_secret(allowed).value == "ok"
    with pytest.raises(HttpResponseError) as ei:
        c.get_secret(other)
    assert ei.value.status_code == 403


def test_assignment_on_other_vault_does_not_grant_demo(server, seeded):
    vault = uniq("iso")
    server.create_vault(vault)
    server.secret_client(vault).set_secret("there", "other-vault-value")
    p, _ = principal_with_role(server, "Key Vault Secrets User", vault=vault)
    assert server.principal_client(p, vault).get_secret("there").value == "other-vault-value"
    with pytest.raises(HttpResponseError) as ei:
        server.principal_client(p, "demo").get_secret(seeded)
    assert ei.value.status_code == 403


def test_role_remove_revokes_access(server, seeded):
    p, assignment = principal_with_role(server, "Key Vault Secrets User")
    listed = server.admin("role", "list", "--vault", "demo")
    assert isinstance(listed, list)
    assert assignment["id"] in {a.get("id") for a in listed}
    c = server.principal_client(p)
    assert c.get_secret(seeded).value == "seeded-value"
    server.admin_ok("role", "remove", assignment["id"])
    assert assignment["id"] not in {a.get("id") for a in server.admin("role", "list", "--vault", "demo")}
    with pytest.raises(HttpResponseError) as ei:
        c.get_secret(seeded)            # same client, cached token: authorization is checked per request
    assert ei.value.status_code == 403


def test_principal_delete_revokes_login(server, seeded):
    p, _ = principal_with_role(server, "Key Vault Secrets User")
    principals = server.admin("principal", "list")
    assert p["client_id"] in {x.get("client_id") for x in principals}
    assert p["client_secret"] not in json.dumps(principals), "principal list exposes client secrets"
    assert server.token_response(p["client_id"], p["client_secret"], p["tenant_id"]).status_code == 200
    server.admin_ok("principal", "delete", p["client_id"])
    assert p["client_id"] not in {x.get("client_id") for x in server.admin("principal", "list")}
    r = server.token_response(p["client_id"], p["client_secret"], p["tenant_id"])
    assert r.status_code in (400, 401) and "access_token" not in r.json()


# ---------------------------------------------------------------------------- admin CLI errors
@pytest.mark.parametrize("args", [
    ("vault", "create", "demo"),                                   # exists
    ("role", "assign", "--principal", "no-such-principal", "--role", "Key Vault Secrets User",
     "--vault", "demo"),
    ("role", "assign", "--principal", "PRINCIPAL", "--role", "Key Vault Emperor", "--vault", "demo"),
    ("role", "assign", "--principal", "PRINCIPAL", "--role", "Key Vault Secrets User",
     "--vault", "no-such-vault"),
    ("role", "remove", "no-such-assignment"),
    ("principal", "delete", "no-such-principal"),
    ("vault", "delete", "no-such-vault"),
])
def test_admin_cli_errors_exit_nonzero(server, args):
    args = tuple(server.creds["client_id"] if a == "PRINCIPAL" else a for a in args)
    proc = server.admin_run(*args)
    assert proc.returncode != 0, f"{args} succeeded: {proc.stdout}"
    assert proc.stderr.strip(), f"{args}: no message on stderr"
