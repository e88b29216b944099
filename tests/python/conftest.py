"""Fixtures for the Keystead black-box suite.

* `*.localhost` (and `localhost`) resolve to 127.0.0.1 inside this process: the machine's resolver
  does not map `demo.vault.localhost`, and vault routing is by host name.
* `server` is one `keystead dev` shared by the session; `fresh_server` is a new one per test
  (for restarts, kill -9, plaintext scans).
* On a failing test the tail of every involved server's stderr is attached to the report.
"""

from __future__ import annotations

import os
import socket
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from keystead_helpers import Keystead, RawVault, env_bin, uniq  # noqa: E402

# ------------------------------------------------------------------ resolver patch
_real_getaddrinfo = socket.getaddrinfo


def _is_local_name(host) -> bool:
    if isinstance(host, bytes):
        host = host.decode("ascii", "ignore")
    if not isinstance(host, str):
        return False
    h = host.rstrip(".").lower()
    return h == "localhost" or h.endswith(".localhost")


def _getaddrinfo(host, *args, **kwargs):
    if _is_local_name(host):
        host = "127.0.0.1"
    return _real_getaddrinfo(host, *args, **kwargs)


socket.getaddrinfo = _getaddrinfo


# ------------------------------------------------------------------ failure reports
@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if not rep.failed:
        return
    seen = set()
    for val in getattr(item, "funcargs", {}).values():
        if isinstance(val, Keystead) and id(val) not in seen:
            seen.add(id(val))
            rep.sections.append((f"keystead stderr tail (port {val.port})", val.stderr_tail()))
        # Multi-process deployments (regions, clusters): every process's log tail.
        for proc in list(getattr(val, "nodes", []) or []) + [getattr(val, "witness", None)]:
            if proc is not None and hasattr(proc, "tail") and id(proc) not in seen:
                seen.add(id(proc))
                rep.sections.append((f"{getattr(proc, 'name', 'process')} log tail", proc.tail()))


# ------------------------------------------------------------------ fixtures
@pytest.fixture(scope="session")
def keystead_bin() -> str:
    path = env_bin()
    if not (path.exists() and os.access(path, os.X_OK)):
        pytest.fail(f"keystead binary not found/executable at {path} (set KEYSTEAD_BIN)")
    return str(path)


@pytest.fixture(scope="session")
def server(keystead_bin, tmp_path_factory) -> Keystead:
    ks = Keystead(keystead_bin, tmp_path_factory.mktemp("ks-session"))
    ks.start()
    yield ks
    ks.stop()


@pytest.fixture
def fresh_server(keystead_bin, tmp_path) -> Keystead:
    ks = Keystead(keystead_bin, tmp_path)
    ks.start()
    yield ks
    ks.stop()


@pytest.fixture(scope="session")
def creds(server) -> dict:
    return server.creds


@pytest.fixture(scope="session")
def client(server):
    """SecretClient on the `demo` vault as the dev principal (Key Vault Administrator)."""
    return server.secret_client("demo")


@pytest.fixture(scope="session")
def raw(server) -> RawVault:
    """Raw HTTPS access to `demo` with a token from the token endpoint."""
    return server.raw("demo")


@pytest.fixture(scope="session")
def other_vault(server) -> str:
    """Vault `other` on the session server; the dev principal is Key Vault Administrator on it."""
    server.create_vault("other")
    return "other"


@pytest.fixture(scope="session")
def other_client(server, other_vault):
    return server.secret_client(other_vault)


@pytest.fixture
def name() -> str:
    return uniq("sec")


# ------------------------------------------------------------------ closing line
def pytest_terminal_summary(terminalreporter, exitstatus, config):
    """With -qq pytest prints no closing statistics line; print a plain one so CI can read it."""
    if config.get_verbosity() >= -1:
        return
    stats = terminalreporter.stats
    failed = len(stats.get("failed", [])) + len(stats.get("error", []))
    line = f"{len(stats.get('passed', []))} passed, {failed} failed"
    if stats.get("skipped"):
        line += f", {len(stats['skipped'])} skipped"
    terminalreporter.write_line(line)
