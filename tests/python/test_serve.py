"""`keystead serve --config FILE`: the production entry point in single-node mode — listen
address, data dir, base domain and a KEK from an environment variable, TLS generated in the data
dir — administered with the CLI over the admin API, and restartable with the same data."""
import base64
import json
import os
import secrets
import subprocess
import time

from keystead_helpers import free_port, make_session


def wait_healthy(port: int, data, log_path) -> None:
    """Until the server in `data` answers /healthz on `port` (bounded); its log on failure."""
    for _ in range(200):
        if (data / "ca.pem").exists():
            try:
                if make_session(str(data / "ca.pem")).get(f"https://localhost:{port}/healthz",
                                                          timeout=2).status_code == 200:
                    return
            except Exception:
                pass
        time.sleep(0.1)
    raise AssertionError(log_path.read_text())


def run_cli(keystead_bin, data, *args):
    out = subprocess.run([keystead_bin, *args, "--data-dir", str(data)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout) if out.stdout.strip() else None



def test_serve_from_config_with_kek_from_env(keystead_bin, tmp_path):
    port = free_port()
    data = tmp_path / "data"
    config = tmp_path / "keystead.toml"
    config.write_text(f'listen = "127.0.0.1:{port}"\ndata_dir = "{data}"\nbase_domain = "vault.localhost"\n'
                      f'[kek]\nenv = "TEST_KEK"\n')
    env = dict(os.environ, TEST_KEK=base64.b64encode(secrets.token_bytes(32)).decode())
    log = open(tmp_path / "serve.log", "wb")

    def start():
        return subprocess.Popen([keystead_bin, "serve", "--config", str(config)], stdout=log, stderr=log, env=env)

    def cli(*args):
        return run_cli(keystead_bin, data, *args)

    proc = start()
    try:
        wait_healthy(port, data, tmp_path / "serve.log")
        assert not (data / "kek.key").exists(), "the KEK came from the environment; nothing may be written"
        vault = cli("vault", "create", "prod", "--retention-days", "30")
        assert vault["retention_days"] == 30
        assert [v["name"] for v in cli("vault", "list")] == ["prod"]
        proc.terminate()
        proc.wait(timeout=15)
        # Without the KEK the data cannot be opened: the server refuses to start.
        bad = subprocess.run([keystead_bin, "serve", "--config", str(config)], capture_output=True, text=True,
                             timeout=30, env=dict(env, TEST_KEK=base64.b64encode(secrets.token_bytes(32)).decode()))
        assert bad.returncode != 0
        proc = start()
        wait_healthy(port, data, tmp_path / "serve.log")
        assert [v["name"] for v in cli("vault", "list")] == ["prod"]
    finally:
        proc.terminate()
        proc.wait(timeout=15)


def test_serve_config_throttle(keystead_bin, tmp_path):
    """`throttle` in the serve config: over the limit a vault request gets 429 with Retry-After;
    a spec that does not parse stops the server at start with the reason."""
    port = free_port()
    data = tmp_path / "data"
    config = tmp_path / "keystead.toml"
    body = f'listen = "127.0.0.1:{port}"\ndata_dir = "{data}"\nthrottle = "THROTTLE"\n[kek]\nfile = "{tmp_path / "kek"}"\n'
    config.write_text(body.replace("THROTTLE", "reads=1"))
    bad = subprocess.run([keystead_bin, "serve", "--config", str(config)], capture_output=True, text=True, timeout=30)
    assert bad.returncode != 0 and "unknown throttle class" in bad.stderr, bad.stderr

    config.write_text(body.replace("THROTTLE", "other=1"))
    log = open(tmp_path / "serve.log", "wb")
    proc = subprocess.Popen([keystead_bin, "serve", "--config", str(config)], stdout=log, stderr=log)
    try:
        wait_healthy(port, data, tmp_path / "serve.log")
        session = make_session(str(data / "ca.pem"))

        def cli(*args):
            return run_cli(keystead_bin, data, *args)

        cli("vault", "create", "prod")
        p = cli("principal", "create", "app")
        cli("role", "assign", "--principal", p["client_id"], "--role", "Key Vault Secrets User", "--vault", "prod")
        token = session.post(f"https://localhost:{port}/{p['tenant_id']}/oauth2/v2.0/token", timeout=10, data={
            "grant_type": "client_credentials", "client_id": p["client_id"], "client_secret": p["client_secret"],
            "scope": f"https://vault.localhost:{port}/.default"}).json()["access_token"]

        def get():
            return session.get(f"https://localhost:{port}/secrets", params={"api-version": "7.6"}, timeout=10,
                               headers={"Host": f"prod.vault.localhost:{port}", "Authorization": f"Bearer {token}"})
        assert get().status_code == 200
        r = get()
        assert r.status_code == 429 and r.json()["error"]["code"] == "Throttled", r.text
        assert int(r.headers["Retry-After"]) >= 1
    finally:
        proc.terminate()
        proc.wait(timeout=15)
