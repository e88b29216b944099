"""A fault-injecting TCP proxy for node-to-node traffic on loopback.

One proxy sits in front of each node's cluster port. Every node sends its peer traffic from its
own loopback address (127.0.1.<node id>, `source_ip` in its config), so the proxy knows which
node a connection comes from and can cut chosen pairs: `block(sources)` drops new connections
from those nodes and closes the ones already open. Only loopback addresses are used.
"""
import asyncio
import threading
from typing import Dict, Set


class FaultProxy:
    def __init__(self, listen_port: int, target_port: int, sources: Dict[str, int], delay_s: float = 0.0):
        self.listen_port = listen_port
        # One-way latency added to every chunk in each direction (tc netem is not available here).
        self.delay_s = delay_s
        self.target_port = target_port
        self.sources = sources            # source IP -> node id
        self.blocked: Set[int] = set()
        self._conns = []                  # (node id, writer, writer)
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("proxy did not start")

    def _run(self):
        asyncio.set_event_loop(self._loop)
        server = self._loop.run_until_complete(
            asyncio.start_server(self._accept, "127.0.0.1", self.listen_port))
        self._server = server
        self._ready.set()
        self._loop.run_forever()

    async def _pipe(self, reader, writer):
        try:
            while True:
                data = await reader.read(65536)
                if not data:
                    break
                if self.delay_s:
                    await asyncio.sleep(self.delay_s)
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()

    async def _accept(self, reader, writer):
        source = writer.get_extra_info("peername")[0]
        node = self.sources.get(source, -1)
        if node in self.blocked:
            writer.close()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.close()
            return
        self._conns.append((node, writer, up_writer))
        await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))

    def _apply_block(self, nodes: Set[int]):
        self.blocked = set(nodes)
        for node, a, b in list(self._conns):
            if node in self.blocked:
                a.close()
                b.close()
        self._conns = [c for c in self._conns if c[0] not in self.blocked]

    def block(self, nodes: Set[int]) -> None:
        """Cut traffic from these source nodes (and the connections they already have)."""
        done = threading.Event()

        def apply():
            self._apply_block(nodes)
            done.set()
        self._loop.call_soon_threadsafe(apply)
        done.wait(5)

    def heal(self) -> None:
        self.block(set())

    def close(self) -> None:
        def stop():
            self._apply_block(set(self.sources.values()))
            self._server.close()
            self._loop.stop()
        self._loop.call_soon_threadsafe(stop)
        self._thread.join(5)
