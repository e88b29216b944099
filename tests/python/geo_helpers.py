"""A multi-region Keystead deployment of real processes on loopback, for the region tests.

`keystead geo init` generates one KEK and CA, node configs per region and the witness config.
Every region listener (and the witness) sits behind a fault proxy, and every node sends its
region traffic from its own loopback address (127.0.2.<n>), so a test can cut chosen links
(`cut`) or add latency; only loopback addresses are used.
"""
import json
import re
import subprocess
import time
from pathlib import Path
from typing import Dict, List, Optional

import requests

from fault_proxy import FaultProxy
from keystead_helpers import free_port, make_session
from process_helpers import Proc, wait_healthz

API = "7.6"
HTTP_TIMEOUT_S = 15


class RegionNode(Proc):
    def __init__(self, binary: str, region: str, index: int, config: Path, api_port: int, source: str):
        super().__init__(binary, f"{region}-{index}", ["serve", "--config", str(config)],
                         config.parent / f"{region}-{index}.log")
        self.region, self.index, self.config, self.api_port, self.source = region, index, config, api_port, source

    def vault_url(self, vault: str = "demo") -> str:
        return f"https://{vault}.vault.localhost:{self.api_port}"


class Geo:
    """Regions `east` (initial primary) and `west` (or `regions`, the first the initial
    primary), one node each unless `nodes` says more."""

    def __init__(self, binary: str, base: Path, failover: str = "read-only", failover_after_ms: int = 10000,
                 lease_ms: int = 2000, witness: bool = True, latency_ms: float = 0.0, nodes: int = 1,
                 failback: str = "manual", region_extra: str = "", regions=("east", "west")):
        self.binary, self.base = binary, base
        base_port = 18441
        self.regions = list(regions)
        out = subprocess.run([binary, "geo", "init", "--out", str(base), "--regions", ",".join(regions),
                              "--nodes-per-region", str(nodes), "--base-port", str(base_port),
                              "--witness", "true" if witness else "false", "--failover", failover,
                              "--failover-after-ms", str(failover_after_ms), "--lease-ms", str(lease_ms),
                              "--failback", failback],
                             capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        plan = json.loads(out.stdout)
        self.ca = plan["ca"]
        # Every generated port gets a free one; region listeners and the witness get a proxy.
        ports: Dict[int, int] = {}
        self.proxied: Dict[str, int] = {}     # name -> (proxy port) for region listeners
        targets = []                           # (name, real port, proxy port)
        for r in range(len(self.regions)):
            for n in range(1, nodes + 1):
                for offset in (0, 1000):
                    ports[base_port + offset + 100 * r + n - 1] = free_port()
                real, proxy = free_port(), free_port()
                ports[base_port + 2000 + 100 * r + n - 1] = real
                targets.append((f"{self.regions[r]}-{n}", real, proxy))
        w_real, w_proxy = free_port(), free_port()
        ports[base_port + 2900] = w_real
        targets.append(("witness", w_real, w_proxy))
        files = [Path(n["config"]) for n in plan["nodes"]] + ([Path(plan["witness"])] if plan["witness"] else [])
        proxy_of = {real: proxy for _, real, proxy in targets}
        for f in files:
            text = f.read_text()

            def sub(m, own_listen: bool):
                port = ports[int(m.group(1))]
                return f"127.0.0.1:{port}"
            # Listen lines keep the real port; peer and witness addresses go through the proxy.
            lines = []
            for line in text.splitlines():
                if line.startswith("listen"):
                    line = re.sub(r"127\.0\.0\.1:(\d+)", lambda m: f"127.0.0.1:{ports[int(m.group(1))]}", line)
                else:
                    line = re.sub(r"127\.0\.0\.1:(\d+)",
                                  lambda m: f"127.0.0.1:{proxy_of.get(ports[int(m.group(1))], ports[int(m.group(1))])}",
                                  line)
                lines.append(line)
            f.write_text("\n".join(lines) + "\n")
        self.sources: Dict[str, str] = {}
        self.nodes: List[RegionNode] = []
        for i, entry in enumerate(plan["nodes"]):
            name = f"{entry['region']}-{entry['node']}"
            source = f"127.0.2.{i + 1}"
            self.sources[name] = source
            config = Path(entry["config"])
            text = config.read_text().replace("[region]\n", f'[region]\nsource_ip = "{source}"\n{region_extra}', 1)
            config.write_text(text)
            api = ports[entry["api_port"]]
            self.nodes.append(RegionNode(binary, entry["region"], entry["node"], config, api, source))
        ids = {src: i for i, src in enumerate(self.sources.values())}
        self.source_ids = ids
        self.proxies: Dict[str, FaultProxy] = {}
        for name, real, proxy in targets:
            self.proxies[name] = FaultProxy(proxy, real, ids, delay_s=latency_ms / 1000.0)
        self.witness = Proc(binary, "witness", ["witness", "--config", plan["witness"]],
                            base / "witness.log") if plan["witness"] else None
        self.admin_file = base / "east-1" / "data" / "admin.json"

    # --------------------------------------------------------------- lifecycle
    def start(self) -> None:
        if self.witness:
            self.witness.start()
        for node in self.nodes:
            node.start()
        for node in self.nodes:
            self.wait_healthy(node)

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()
        if self.witness:
            self.witness.stop()
        for proxy in self.proxies.values():
            proxy.close()

    def region_nodes(self, region: str) -> List[RegionNode]:
        return [n for n in self.nodes if n.region == region]

    def node(self, region: str) -> RegionNode:
        return self.region_nodes(region)[0]

    def wait_healthy(self, node: RegionNode, timeout: float = 90) -> None:
        wait_healthz(node, f"https://localhost:{node.api_port}", self.ca, timeout)

    # ------------------------------------------------------------------ faults
    def cut(self, a: str, b: str) -> None:
        """Cut every link between region (or 'witness') `a` and `b`, both directions."""
        self._set_block(a, b, True)

    def heal(self) -> None:
        for proxy in self.proxies.values():
            proxy.heal()

    def _set_block(self, a: str, b: str, on: bool) -> None:
        def names(x):
            return ["witness"] if x == "witness" else [n.name for n in self.region_nodes(x)]
        for src_side, dst_side in ((a, b), (b, a)):
            srcs = {self.source_ids[self.sources[n]] for n in names(src_side) if n in self.sources}
            for dst in names(dst_side):
                proxy = self.proxies[dst]
                proxy.block(set(proxy.blocked) | srcs)

    # ------------------------------------------------------------------- admin
    def admin_credentials(self) -> dict:
        return json.loads(self.admin_file.read_text())

    def admin(self, *args: str, via: Optional[RegionNode] = None, check: bool = True):
        node = via or self.nodes[0]
        creds = self.admin_credentials()
        cmd = [self.binary, *args, "--endpoint", f"https://localhost:{node.api_port}",
               f"--token={creds['token']}", "--ca-cert", self.ca]
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        if check:
            assert out.returncode == 0, f"{args}: {out.stderr}"
            return json.loads(out.stdout) if out.stdout.strip() else None
        return out

    def status(self, via: RegionNode) -> dict:
        return self.admin("region", "status", "--json", via=via)

    def region_view(self, via: RegionNode) -> dict:
        return self.status(via)["regions"][0]

    def setup_vault(self, vault: str = "demo") -> dict:
        self.admin("vault", "create", vault)
        principal = self.admin("principal", "create", "geo-test")
        self.admin("role", "assign", "--principal", principal["client_id"], "--role",
                   "Key Vault Administrator", "--vault", vault)
        # Replication is asynchronous: wait until every running region knows the principal.
        primary = self.nodes[0]
        head = self.region_view(primary)["seq"]
        for node in self.nodes:
            if node.alive and node.region != primary.region:
                self.wait_seq(node.region, head)
        return principal

    def token(self, node: RegionNode, principal: dict) -> str:
        session = make_session(self.ca)
        r = session.post(f"https://localhost:{node.api_port}/{principal['tenant_id']}/oauth2/v2.0/token",
                         data={"grant_type": "client_credentials", "client_id": principal["client_id"],
                               "client_secret": principal["client_secret"],
                               "scope": f"https://vault.localhost:{node.api_port}/.default"},
                         timeout=HTTP_TIMEOUT_S)
        assert r.status_code == 200, r.text
        return r.json()["access_token"]

    def request(self, node: RegionNode, token: str, method: str, path: str, **kw) -> requests.Response:
        session = make_session(self.ca)
        return session.request(method, f"{node.vault_url()}{path}", params={"api-version": API},
                               headers={"Authorization": f"Bearer {token}"}, timeout=HTTP_TIMEOUT_S, **kw)

    # -------------------------------------------------------------------- SDK
    def credential(self, node: RegionNode, principal: dict):
        from azure.identity import ClientSecretCredential
        return ClientSecretCredential(principal["tenant_id"], principal["client_id"], principal["client_secret"],
                                      authority=f"https://localhost:{node.api_port}",
                                      disable_instance_discovery=True, connection_verify=self.ca)

    def secret_client(self, node: RegionNode, principal: dict, **kw):
        from azure.keyvault.secrets import SecretClient
        # challenge-resource verification stays ON
        return SecretClient(node.vault_url(), self.credential(node, principal), connection_verify=self.ca,
                            connection_timeout=5, read_timeout=30, **kw)

    def key_client(self, node: RegionNode, principal: dict, **kw):
        from azure.keyvault.keys import KeyClient
        return KeyClient(node.vault_url(), self.credential(node, principal), connection_verify=self.ca,
                         connection_timeout=5, read_timeout=30, **kw)

    def crypto_client(self, node: RegionNode, principal: dict, key_id: str):
        from azure.keyvault.keys.crypto import CryptographyClient
        return CryptographyClient(key_id, self.credential(node, principal), connection_verify=self.ca,
                                  connection_timeout=5, read_timeout=30)

    def wait_seq(self, region: str, seq: int, timeout: float = 30) -> None:
        """Waits until `region` has applied the stream up to `seq`."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if self.region_view(self.node(region))["seq"] >= seq:
                    return
            except AssertionError:
                pass
            time.sleep(0.2)
        raise AssertionError(f"{region} did not reach seq {seq}")
