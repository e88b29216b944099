"""A zone-redundant Keystead cluster of real processes on loopback, for the cluster tests.

`keystead cluster init` generates the KEK, the cluster CA, node certificates and configs;
each node is a `keystead serve --config` process that the tests start, kill -9 and restart.
"""
import json
import subprocess
import time
from pathlib import Path
from typing import Dict, List, Optional


from keystead_helpers import free_port, make_session
from process_helpers import Proc, wait_healthz

HTTP_TIMEOUT_S = 10


class Node(Proc):
    def __init__(self, binary: str, node_id: int, config: Path, api_port: int, cluster_port: int, zone: str):
        super().__init__(binary, f"node {node_id}", ["serve", "--config", str(config)],
                         config.parent / f"node-{node_id}.log")
        self.node_id = node_id
        self.config = config
        self.api_port = api_port
        self.cluster_port = cluster_port
        self.zone = zone

    def vault_url(self, vault: str) -> str:
        return f"https://{vault}.vault.localhost:{self.api_port}"


class Cluster:
    def __init__(self, binary: str, base: Path, size: int = 3, proxies: bool = False, extra_cluster_config: str = ""):
        self.binary = binary
        self.base = base
        api_ports = [free_port() for _ in range(size)]
        cluster_ports = [free_port() for _ in range(size)]
        # With proxies, peers reach node i through a fault proxy and send from 127.0.1.<i>.
        proxy_ports = [free_port() for _ in range(size)] if proxies else cluster_ports
        self.proxies = []
        # Ports are assigned by `cluster init` as base+i; pick bases with free ranges by
        # rewriting the generated configs with the free ports found above.
        out = subprocess.run([binary, "cluster", "init", "--nodes", str(size), "--out", str(base),
                              "--zones", "zone-a,zone-b,zone-c"],
                             capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        plan = json.loads(out.stdout)
        self.ca = plan["ca"]
        self.nodes: List[Node] = []
        for i, entry in enumerate(plan["nodes"]):
            config = Path(entry["config"])
            text = config.read_text()
            text = text.replace(entry["api"], f"127.0.0.1:{api_ports[i]}")
            text = text.replace(entry["cluster"], f"127.0.0.1:{cluster_ports[i]}")
            # [cluster] is the last section of a generated config.
            text += extra_cluster_config
            if proxies:
                text += f'advertise = "127.0.0.1:{proxy_ports[i]}"\nsource_ip = "127.0.1.{entry["node_id"]}"\n'
            config.write_text(text)
            node = Node(binary, entry["node_id"], config, api_ports[i], cluster_ports[i], entry["zone"])
            node.peer_port = proxy_ports[i]
            self.nodes.append(node)
        if proxies:
            from fault_proxy import FaultProxy
            sources = {f"127.0.1.{n.node_id}": n.node_id for n in self.nodes}
            self.proxies = [FaultProxy(n.peer_port, n.cluster_port, sources) for n in self.nodes]
        self.admin_file = base / "node-1" / "data" / "admin.json"

    # --------------------------------------------------------------- lifecycle
    def start_all(self) -> None:
        for node in self.nodes:
            node.start()
        self.wait_ready(self.nodes[0])
        for node in self.nodes[1:]:
            self.admin("cluster", "join", "--node-id", str(node.node_id),
                       "--addr", f"127.0.0.1:{node.peer_port}", "--api-addr", f"127.0.0.1:{node.api_port}",
                       "--zone", node.zone, via=self.nodes[0])
        for node in self.nodes:
            self.wait_ready(node)

    def wipe(self, node: Node) -> None:
        """Deletes a (stopped) node's data, as when a machine is replaced."""
        import shutil
        shutil.rmtree(node.config.parent / f"node-{node.node_id}" / "data", ignore_errors=True)

    def stop_all(self) -> None:
        for node in self.nodes:
            node.stop()
        for proxy in self.proxies:
            proxy.close()

    def isolate(self, victim: Node) -> None:
        """Cut every link between `victim` and the other nodes (both directions)."""
        others = {n.node_id for n in self.nodes if n is not victim}
        for node, proxy in zip(self.nodes, self.proxies):
            proxy.block(others if node is victim else {victim.node_id})

    def cut_one_way(self, source: Node, target: Node) -> None:
        """Cut `source`'s connections to `target` only: `target` still reaches `source`, and
        gets its answers back on its own connections."""
        proxy = self.proxies[self.nodes.index(target)]
        proxy.block({source.node_id})

    def heal(self) -> None:
        for proxy in self.proxies:
            proxy.heal()

    def wait_ready(self, node: Node, timeout: float = 60) -> None:
        wait_healthz(node, f"https://localhost:{node.api_port}", self.ca, timeout)

    # ------------------------------------------------------------------- admin
    def admin_credentials(self) -> dict:
        return json.loads(self.admin_file.read_text())

    def admin(self, *args: str, via: Optional[Node] = None):
        node = via or self.any_alive()
        creds = self.admin_credentials()
        cmd = [self.binary, *args, "--endpoint", f"https://localhost:{node.api_port}",
               f"--token={creds['token']}", "--ca-cert", self.ca]
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, f"{args}: {out.stderr}"
        return json.loads(out.stdout) if out.stdout.strip() else None

    def status(self, node: Node) -> dict:
        return self.admin("cluster", "status", via=node)

    def leader(self, timeout: float = 30) -> Node:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for node in self.nodes:
                if not node.alive:
                    continue
                try:
                    status = self.status(node)
                except AssertionError:
                    continue
                leader = status.get("leader")
                for candidate in self.nodes:
                    if candidate.node_id == leader and candidate.alive:
                        return candidate
            time.sleep(0.2)
        raise AssertionError("no leader elected")

    def any_alive(self) -> Node:
        for node in self.nodes:
            if node.alive:
                return node
        raise AssertionError("no node alive")

    # ------------------------------------------------------------ data plane
    def setup_vault(self, vault: str = "demo") -> Dict[str, str]:
        self.admin("vault", "create", vault)
        principal = self.admin("principal", "create", "cluster-test")
        self.admin("role", "assign", "--principal", principal["client_id"], "--role",
                   "Key Vault Administrator", "--vault", vault)
        return principal

    def token(self, node: Node, principal: dict) -> str:
        session = make_session(self.ca)
        r = session.post(f"https://localhost:{node.api_port}/{principal['tenant_id']}/oauth2/v2.0/token",
                         data={"grant_type": "client_credentials", "client_id": principal["client_id"],
                               "client_secret": principal["client_secret"],
                               "scope": f"https://vault.localhost:{node.api_port}/.default"},
                         timeout=HTTP_TIMEOUT_S)
        assert r.status_code == 200, r.text
        return r.json()["access_token"]
