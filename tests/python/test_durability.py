"""Durability and confidentiality at rest of Keystead's data directory.

(a) Plaintext scan: secret values (several versions, a restored backup, a soft-deleted secret) and
    the client secret of a CLI-created principal must not appear in any file under the data directory
    (except the deliberately plaintext dev-credentials.json / admin.json), neither raw, nor hex, nor
    base64/base64url at any alignment — after kill -9 (no clean shutdown) and after a clean stop.
    The captured server logs must not contain them either.
(b) Crash test: rounds of concurrent raw HTTPS writes, kill -9 at a random moment, restart; every
    write acknowledged with 200 in any earlier round must be readable by its version id.
All loops are bounded; the crash test stays under two minutes.
"""

from __future__ import annotations

import base64
import json
import random
import re
import secrets
import threading
import time
from pathlib import Path

import requests

from keystead_helpers import encodings, make_session, scan, uniq, version_of

CRED_FILES = {"dev-credentials.json", "admin.json"}
HEX32 = re.compile(r"^[0-9a-f]{32}$")


# ---------------------------------------------------------------------------- plaintext scan
def data_files(data_dir: Path):
    for p in sorted(data_dir.rglob("*")):
        if p.is_file() and not (p.parent == data_dir and p.name in CRED_FILES):
            yield p


def test_encodings_helper_finds_embedded_base64():
    s = b"sekrit-value-0123456789abcdefXYZ"
    for prefix in (b"", b"a", b"ab", b"abc", b"{\"v\":\""):
        blob = prefix + s + b"tail"
        for text in (base64.b64encode(blob), base64.urlsafe_b64encode(blob)):
            assert any(p in text for p in encodings(s).values())
    assert not any(p in b"nothing to see here" * 10 for p in encodings(s).values())


def populate(ks) -> dict:
    """Write secrets with random values in several ways; return label → secret bytes."""
    needles = {}
    c = ks.secret_client()
    for i in range(4):
        name = uniq("plain")
        for v in range(2):
            val = "pv-" + secrets.token_urlsafe(24)
            c.set_secret(name, val, tags={"i": str(i)})
            needles[f"{name}/v{v}"] = val.encode()
        c.update_secret_properties(name, content_type="text/plain")
    deleted = uniq("plaindel")
    val = "pd-" + secrets.token_urlsafe(24)
    c.set_secret(deleted, val)
    c.begin_delete_secret(deleted).wait(timeout=10)
    needles[f"{deleted}(deleted)"] = val.encode()

    restored = uniq("plainrst")
    val = "pr-" + secrets.token_urlsafe(24)
    c.set_secret(restored, val)
    blob = c.backup_secret(restored)
    ks.create_vault("scanother")
    ks.secret_client("scanother").restore_secret_backup(blob)
    needles[f"{restored}(restored)"] = val.encode()
    # the backup blob itself is not plaintext either
    assert not any(p in blob for p in encodings(val.encode()).values()), "backup blob contains the value"

    big = "pb-" + secrets.token_urlsafe(9000)
    c.set_secret(uniq("plainbig"), big)
    needles["big-value"] = big.encode()

    p = ks.create_principal()
    needles["principal-secret"] = p["client_secret"].encode()
    needles.update(import_known_keys(ks))
    return needles


def import_known_keys(ks) -> dict:
    """Import an RSA, an EC and an AES key whose private parts the test knows; return label →
    private bytes (RSA d, p, q; EC d; AES k). Keys are sealed like secret values."""
    from azure.keyvault.keys import JsonWebKey
    from cryptography.hazmat.primitives.asymmetric import ec, rsa

    def b(i: int, size: int = 0) -> bytes:
        return i.to_bytes(max(size, (i.bit_length() + 7) // 8), "big")

    keys = ks.key_client()
    rsa_nums = rsa.generate_private_key(public_exponent=65537, key_size=2048).private_numbers()
    keys.import_key(uniq("plainrsa"), JsonWebKey(
        kty="RSA", n=b(rsa_nums.public_numbers.n), e=b(rsa_nums.public_numbers.e), d=b(rsa_nums.d),
        p=b(rsa_nums.p), q=b(rsa_nums.q), dp=b(rsa_nums.dmp1), dq=b(rsa_nums.dmq1), qi=b(rsa_nums.iqmp)))
    ec_nums = ec.generate_private_key(ec.SECP256R1()).private_numbers()
    keys.import_key(uniq("plainec"), JsonWebKey(
        kty="EC", crv="P-256", x=b(ec_nums.public_numbers.x, 32), y=b(ec_nums.public_numbers.y, 32),
        d=b(ec_nums.private_value, 32)))
    k = secrets.token_bytes(32)
    keys.import_key(uniq("plainaes"), JsonWebKey(kty="oct", k=k))
    return {"rsa-d": b(rsa_nums.d), "rsa-p": b(rsa_nums.p), "rsa-q": b(rsa_nums.q),
            "ec-d": b(ec_nums.private_value, 32), "aes-k": k}


def assert_no_plaintext(ks, needles: dict, when: str):
    files = list(data_files(ks.data_dir))
    assert files, "data dir holds no files"
    hits = scan(files, needles)
    assert not hits, f"plaintext found in data dir ({when}): {hits[:10]}"


def test_no_plaintext_at_rest(fresh_server):
    ks = fresh_server
    needles = populate(ks)
    ks.kill9()
    assert_no_plaintext(ks, needles, "after kill -9")
    ks.start()
    assert ks.secret_client().get_secret(next(iter(needles)).split("/")[0]).value
    ks.stop()
    assert_no_plaintext(ks, needles, "after clean stop")
    log_hits = scan([ks.stderr_path, ks.stdout_path], needles)
    assert not log_hits, f"secret material in server logs: {log_hits[:10]}"


def test_dev_credentials_only_in_credential_files(fresh_server):
    ks = fresh_server
    admin_token = json.loads((ks.data_dir / "admin.json").read_text())["token"]
    needles = {"dev-client-secret": ks.creds["client_secret"].encode(), "admin-token": admin_token.encode()}
    ks.secret_client().set_secret("touch", "x")
    ks.stop()
    hits = scan(data_files(ks.data_dir), needles)
    assert not hits, f"credentials stored in plaintext outside the credential files: {hits}"
    assert not scan([ks.stderr_path], needles), "credentials in server stderr"


# ---------------------------------------------------------------------------- crash test
ROUNDS = 6
ROUND_START_BUDGET_S = 75.0      # no new round starts after this; total stays < 2 min
MAX_WRITES_PER_THREAD = 400


class Writer(threading.Thread):
    def __init__(self, ks, token, tid, rnd, stop):
        super().__init__(daemon=True)
        self.url = ks.vault_url()
        self.ca = ks.ca
        self.token = token
        self.tid, self.rnd, self.stop = tid, rnd, stop
        self.acked = []           # (name, value, version)
        self.unexpected = []      # (status, body) of non-200 answers

    def run(self):
        s = make_session(self.ca)
        headers = {"Authorization": f"Bearer {self.token}"}
        for i in range(MAX_WRITES_PER_THREAD):
            if self.stop.is_set():
                break
            name = f"crash-t{self.tid}-{i % 7}"
            value = f"r{self.rnd}-t{self.tid}-{i}-{secrets.token_hex(8)}"
            try:
                r = s.put(f"{self.url}/secrets/{name}", params={"api-version": "2026-04-01"},
                          json={"value": value}, headers=headers, timeout=5)
            except requests.RequestException:
                if self.stop.is_set():
                    break
                time.sleep(0.01)
                continue
            if r.status_code == 200:
                body = r.json()
                self.acked.append((name, value, version_of(body["id"])))
            else:
                self.unexpected.append((r.status_code, r.text[:200]))


def verify_acked(ks, acked):
    """Every acknowledged write is readable by version id with its value (3 reader threads)."""
    token = ks.token()
    failures = []
    lock = threading.Lock()

    def check(chunk):
        s = make_session(ks.ca)
        for name, value, version in chunk:
            problem = None
            for _attempt in range(3):       # bounded retry only for keep-alive races on an idempotent GET
                try:
                    r = s.get(f"{ks.vault_url()}/secrets/{name}/{version}",
                              params={"api-version": "2026-04-01"},
                              headers={"Authorization": f"Bearer {token}"}, timeout=15)
                except requests.ConnectionError as e:
                    problem = f"connection error: {e}"
                    continue
                ok = r.status_code == 200 and r.json().get("value") == value
                problem = None if ok else f"{r.status_code} {r.text[:120]}"
                break
            if problem:
                with lock:
                    failures.append((name, version, value, problem))

    chunks = [acked[i::3] for i in range(3)]
    threads = [threading.Thread(target=check, args=(ch,), daemon=True) for ch in chunks]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
        assert not t.is_alive(), "verification did not finish in 60 s"
    assert not failures, f"{len(failures)} acknowledged writes lost/corrupted after kill -9: {failures[:5]}"


def test_crash_kill9_keeps_acknowledged_writes(fresh_server):
    ks = fresh_server
    rng = random.Random()
    t_start = time.monotonic()
    acked = []
    rounds = 0
    for rnd in range(ROUNDS):
        if time.monotonic() - t_start > ROUND_START_BUDGET_S:
            break
        if not ks.running:
            ks.start()
        verify_acked(ks, acked)
        token = ks.token()
        stop = threading.Event()
        writers = [Writer(ks, token, tid, rnd, stop) for tid in range(rng.randint(2, 4))]
        for w in writers:
            w.start()
        time.sleep(rng.uniform(0.3, 1.5))
        ks.kill9()
        stop.set()
        for w in writers:
            w.join(timeout=20)
            assert not w.is_alive(), "writer thread did not stop"
            assert not w.unexpected, f"unexpected answers while writing: {w.unexpected[:5]}"
            for name, value, version in w.acked:
                assert HEX32.match(version), version
            acked.extend(w.acked)
        rounds += 1
    ks.start()
    verify_acked(ks, acked)
    print(f"crash test: {rounds} rounds, {len(acked)} acknowledged writes verified")
    assert rounds >= 3, f"only {rounds} rounds fit in the time budget"
    assert len(acked) >= rounds, f"too few acknowledged writes ({len(acked)}) to say anything"
    assert len({v for _, _, v in acked}) == len(acked), "duplicate version ids handed out"
    assert time.monotonic() - t_start < 120, "crash test exceeded its 2-minute budget"
