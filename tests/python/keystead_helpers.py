"""Helpers shared by the Keystead black-box tests.

`Keystead` runs the real binary (`keystead dev`) in a temporary directory on a free port and
offers the admin CLI, tokens from Keystead's own authority, SDK clients and raw HTTPS access.
Every wait in here is bounded.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import socket
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any, Optional

import requests

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_API_VERSION = "2026-04-01"
HEALTH_TIMEOUT_S = 30.0      # first start generates a CA and keys: allow some time
HEALTH_POLL_S = 0.1
ADMIN_TIMEOUT_S = 60.0
HTTP_TIMEOUT_S = 30.0


def uniq(prefix: str = "s") -> str:
    """A fresh, valid secret/vault name."""
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class AdminError(RuntimeError):
    def __init__(self, args, proc: subprocess.CompletedProcess):
        self.returncode = proc.returncode
        self.stdout = proc.stdout
        self.stderr = proc.stderr
        super().__init__(f"keystead {' '.join(args)} exited {proc.returncode}: {proc.stderr.strip()}")


class Keystead:
    """One `keystead dev` process bound to a data directory and a fixed port."""

    def __init__(self, binary: str, base_dir: Path, port: Optional[int] = None, extra_args=()):
        self.binary = str(binary)
        self.extra_args = list(extra_args)       # more `keystead dev` flags
        self.base_dir = Path(base_dir)
        self.data_dir = self.base_dir / "data"
        self.log_dir = self.base_dir / "logs"          # outside data_dir on purpose (plaintext scans)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.stderr_path = self.log_dir / "keystead.stderr"
        self.stdout_path = self.log_dir / "keystead.stdout"
        self.port = port or free_port()
        self.proc: Optional[subprocess.Popen] = None
        self.creds: dict = {}
        self.starts = 0

    # ---------------------------------------------------------------- process control
    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self) -> "Keystead":
        assert not self.running, "already running"
        last_err = None
        for _attempt in range(5):               # bounded: the port may still be in use right after a kill
            self.starts += 1
            with open(self.stdout_path, "ab") as out, open(self.stderr_path, "ab") as err:
                marker = f"\n===== keystead start #{self.starts} =====\n".encode()
                err.write(marker)
                err.flush()
                self.proc = subprocess.Popen(
                    [self.binary, "dev", "--data-dir", str(self.data_dir), "--port", str(self.port),
                     *self.extra_args],
                    stdout=out, stderr=err, stdin=subprocess.DEVNULL,
                )
            try:
                self._wait_healthy()
                break
            except RuntimeError as e:   # process died while starting
                last_err = e
                time.sleep(0.5)
        else:
            raise RuntimeError(f"keystead did not start: {last_err}\n{self.stderr_tail()}")
        self.creds = json.loads((self.data_dir / "dev-credentials.json").read_text())
        return self

    def _wait_healthy(self) -> None:
        ca = self.data_dir / "ca.pem"
        deadline = time.monotonic() + HEALTH_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"keystead exited with {self.proc.returncode} during start-up")
            if ca.exists():
                try:
                    r = requests.get(f"{self.base_url}/healthz", verify=str(ca), timeout=2)
                    if r.status_code == 200:
                        return
                except requests.RequestException:
                    pass
            time.sleep(HEALTH_POLL_S)
        self.kill9()
        raise AssertionError(f"keystead not healthy after {HEALTH_TIMEOUT_S}s\n{self.stderr_tail()}")

    def stop(self) -> None:
        if not self.running:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)

    def kill9(self) -> None:
        if not self.running:
            return
        self.proc.kill()            # SIGKILL to this pid only
        self.proc.wait(timeout=10)

    def restart(self) -> "Keystead":
        self.stop()
        return self.start()

    def stderr_tail(self, lines: int = 60) -> str:
        try:
            text = self.stderr_path.read_text(errors="replace")
        except FileNotFoundError:
            return "(no stderr captured)"
        return "\n".join(text.splitlines()[-lines:])

    def stdout_text(self) -> str:
        try:
            return self.stdout_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    # ---------------------------------------------------------------- addresses
    @property
    def base_url(self) -> str:
        return f"https://localhost:{self.port}"

    @property
    def resource(self) -> str:
        return f"https://vault.localhost:{self.port}"

    @property
    def ca(self) -> str:
        return self.creds.get("ca_cert") or str(self.data_dir / "ca.pem")

    def vault_url(self, vault: str = "demo") -> str:
        return f"https://{vault}.vault.localhost:{self.port}"

    # ---------------------------------------------------------------- admin CLI
    def admin_run(self, *args: str) -> subprocess.CompletedProcess:
        argv = [self.binary, *args, "--data-dir", str(self.data_dir)]
        return subprocess.run(argv, capture_output=True, text=True, timeout=ADMIN_TIMEOUT_S,
                              stdin=subprocess.DEVNULL)

    def admin(self, *args: str) -> Any:
        proc = self.admin_run(*args)
        if proc.returncode != 0:
            raise AdminError(args, proc)
        try:
            return json.loads(proc.stdout)
        except json.JSONDecodeError as e:
            raise AssertionError(f"keystead {' '.join(args)} printed no JSON: {proc.stdout!r}") from e

    def admin_ok(self, *args: str) -> str:
        """Run a CLI command that must succeed; returns its stdout."""
        proc = self.admin_run(*args)
        if proc.returncode != 0:
            raise AdminError(args, proc)
        return proc.stdout

    def create_vault(self, name: str, *flags: str, grant_dev: bool = True) -> dict:
        """Create a vault via the CLI and give the dev principal Key Vault Administrator on it."""
        info = self.admin("vault", "create", name, *flags)
        if grant_dev:
            self.assign_role(self.creds["client_id"], "Key Vault Administrator", name)
        return info

    def assign_role(self, client_id: str, role: str, vault: str, scope: Optional[str] = None) -> dict:
        args = ["role", "assign", "--principal", client_id, "--role", role, "--vault", vault]
        if scope:
            args += ["--scope", scope]
        return self.admin(*args)

    def create_principal(self, name: Optional[str] = None) -> dict:
        return self.admin("principal", "create", name or uniq("sp"))

    # ---------------------------------------------------------------- authority
    def token_url(self, tenant: Optional[str] = None) -> str:
        return f"{self.creds['authority_host']}/{tenant or self.creds['tenant_id']}/oauth2/v2.0/token"

    def token_response(self, client_id=None, client_secret=None, tenant=None, scope=None) -> requests.Response:
        form = {
            "grant_type": "client_credentials",
            "client_id": client_id or self.creds["client_id"],
            "client_secret": client_secret if client_secret is not None else self.creds["client_secret"],
            "scope": scope or f"{self.resource}/.default",
        }
        return requests.post(self.token_url(tenant), data=form, verify=self.ca, timeout=HTTP_TIMEOUT_S)

    def token(self, client_id=None, client_secret=None, tenant=None, scope=None) -> str:
        r = self.token_response(client_id, client_secret, tenant, scope)
        assert r.status_code == 200, f"token endpoint: {r.status_code} {r.text}"
        return r.json()["access_token"]

    # ---------------------------------------------------------------- SDK
    def credential(self, client_id=None, client_secret=None, tenant=None):
        from azure.identity import ClientSecretCredential

        return ClientSecretCredential(
            tenant or self.creds["tenant_id"],
            client_id or self.creds["client_id"],
            client_secret or self.creds["client_secret"],
            authority=self.creds["authority_host"],
            disable_instance_discovery=True,
            connection_verify=self.ca,
        )

    def secret_client(self, vault: str = "demo", credential=None):
        from azure.keyvault.secrets import SecretClient

        # challenge-resource verification deliberately left ON
        return SecretClient(self.vault_url(vault), credential or self.credential(), connection_verify=self.ca,
                            connection_timeout=10, read_timeout=60)

    def key_client(self, vault: str = "demo"):
        from azure.keyvault.keys import KeyClient

        return KeyClient(self.vault_url(vault), self.credential(), connection_verify=self.ca,
                         connection_timeout=10, read_timeout=60)

    def principal_client(self, principal: dict, vault: str = "demo"):
        cred = self.credential(principal["client_id"], principal["client_secret"], principal.get("tenant_id"))
        return self.secret_client(vault, cred)

    def raw(self, vault: str = "demo", token: Optional[str] = None, keep_after_error: bool = False) -> "RawVault":
        return RawVault(self, vault, token if token is not None else self.token(), keep_after_error)


def make_session(ca: str) -> requests.Session:
    """A session that ignores REQUESTS_CA_BUNDLE/proxy variables and trusts only the Keystead CA."""
    s = requests.Session()
    s.trust_env = False
    s.verify = ca
    return s


class RawVault:
    """Plain `requests` access to one vault with a bearer token (or none)."""

    def __init__(self, server: Keystead, vault: str, token: Optional[str], keep_after_error: bool = False):
        self.server = server
        # By default a connection is not reused after an error answer, so that one server-side
        # keep-alive problem (tested on its own in test_bad_input) cannot break unrelated tests.
        self.keep_after_error = keep_after_error
        self.base = server.vault_url(vault)
        self.token = token
        self.session = make_session(server.ca)

    def url(self, path: str) -> str:
        return self.base + path

    def request(self, method: str, path: str, *, api_version: Optional[str] = DEFAULT_API_VERSION,
                params: Optional[dict] = None, auth: bool = True, headers: Optional[dict] = None,
                timeout: float = HTTP_TIMEOUT_S, full_url: Optional[str] = None, **kw) -> requests.Response:
        q = dict(params or {})
        if api_version is not None:
            q.setdefault("api-version", api_version)
        h = {"Accept": "application/json"}
        if auth and self.token:
            h["Authorization"] = f"Bearer {self.token}"
        h.update(headers or {})
        kw.setdefault("verify", self.server.ca)     # explicit: REQUESTS_CA_BUNDLE would win over session.verify
        r = self.session.request(method, full_url or self.url(path), params=q, headers=h,
                                 timeout=timeout, **kw)
        if r.status_code >= 400 and not self.keep_after_error:
            self.session.close()
        return r

    def get(self, path, **kw):
        return self.request("GET", path, **kw)

    def put(self, path, **kw):
        return self.request("PUT", path, **kw)

    def patch(self, path, **kw):
        return self.request("PATCH", path, **kw)

    def post(self, path, **kw):
        return self.request("POST", path, **kw)

    def delete(self, path, **kw):
        return self.request("DELETE", path, **kw)

    def set_secret(self, name: str, value: str, **extra) -> dict:
        r = self.put(f"/secrets/{name}", json={"value": value, **extra})
        assert r.status_code == 200, f"set {name}: {r.status_code} {r.text}"
        return r.json()


def version_of(secret_id: str) -> str:
    return secret_id.rstrip("/").rsplit("/", 1)[-1]


def assert_kv_error(r: requests.Response, status, code: Optional[str] = None,
                    inner: Optional[str] = None) -> dict:
    """Assert a Key Vault error response: status (int or tuple), JSON body error.code/message."""
    statuses = status if isinstance(status, (tuple, list, set)) else (status,)
    assert r.status_code != 500, f"server error 500: {r.text[:500]}"
    assert r.status_code in statuses, f"expected {statuses}, got {r.status_code}: {r.text[:500]}"
    try:
        body = r.json()
    except ValueError as e:
        raise AssertionError(f"error body is not JSON: {r.text[:300]!r}") from e
    err = body.get("error")
    assert isinstance(err, dict), f"no error object: {body}"
    assert isinstance(err.get("code"), str) and err["code"], f"no error.code: {body}"
    assert isinstance(err.get("message"), str) and err["message"], f"no error.message: {body}"
    if code is not None:
        assert err["code"] == code, f"error.code {err['code']!r} != {code!r}: {body}"
    if inner is not None:
        ie = err.get("innererror") or {}
        assert ie.get("code") == inner, f"innererror.code {ie.get('code')!r} != {inner!r}: {body}"
    return err


def wait_until(pred, timeout: float = 10.0, interval: float = 0.1):
    """Poll `pred` until it returns truthy or `timeout` elapses; returns the last value."""
    deadline = time.monotonic() + timeout
    val = pred()
    while not val and time.monotonic() < deadline:
        time.sleep(interval)
        val = pred()
    return val


def env_bin() -> Path:
    p = os.environ.get("KEYSTEAD_BIN")
    path = Path(p) if p else REPO_ROOT / "target" / "release" / "keystead"
    if not path.is_absolute():
        path = REPO_ROOT / path
    return path


# ------------------------------------------------------------------ plaintext scan
def encodings(secret: bytes) -> dict:
    """Byte patterns that would reveal `secret`: raw, hex, and base64/base64url at all 3 alignments."""
    out = {"raw": secret, "hex": secret.hex().encode(), "HEX": secret.hex().upper().encode()}
    for k in range(3):
        enc = base64.b64encode(b"\0" * k + secret)
        start = -(-8 * k // 6)                      # first char not touched by the k prefix bytes
        end = (8 * (k + len(secret))) // 6          # last char fully inside the secret
        core = enc[start:end]
        out[f"b64@{k}"] = core
        out[f"b64url@{k}"] = core.translate(bytes.maketrans(b"+/", b"-_"))
    return out


def scan(paths, needles: dict) -> list:
    """Return (file, needle label, encoding) for every hit."""
    patterns = {(label, enc): pat for label, s in needles.items() for enc, pat in encodings(s).items()}
    hits = []
    for path in paths:
        data = Path(path).read_bytes()
        for (label, enc), pat in patterns.items():
            if pat in data:
                hits.append((str(path), label, enc))
    return hits
