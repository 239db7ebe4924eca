"""Debian's redis-server: a standalone server, and a Redis Cluster of 3 masters + 3 replicas.

Both run in folders of their own under the test cache, with no persistence (--save "",
--appendonly no), bound to 127.0.0.1 on free ports. The cluster is formed as an operator
forms one: six servers with --cluster-enabled, then `redis-cli --cluster create ...
--cluster-replicas 1 --cluster-yes`, then waiting until every node reports cluster_state:ok,
all 16384 slots covered, one slot map, and every replica in sync with its master.

Fault tests get the processes (RedisNode: kill, stop, freeze, thaw, start again on the same
port and folder) and the cluster's live topology (RedisCluster: masters, replicas,
master_for(key), wait_for_failover, wait_ok). A server that cannot start raises
RuntimeError with its log: a failure, never a skip.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ._process import HOST, cache_dir, free_port, log_tail, run_server

SLOTS = 16384
NODE_TIMEOUT_MS = 2000  # --cluster-node-timeout: a dead master is failed over in ~2-4 s


def _executable(name: str) -> str:
    found = shutil.which(name) or (
        f"/usr/bin/{name}" if Path(f"/usr/bin/{name}").is_file() else None
    )
    if found is None:
        raise RuntimeError(
            f"{name} not found: install Debian's redis-server package "
            "(apt-get install redis-server; scripts/test does it)"
        )
    return found


def _client(port: int, timeout: float = 2.0) -> Any:
    import redis

    return redis.Redis(
        host=HOST,
        port=port,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        decode_responses=True,
    )


def _pings(port: int) -> bool:
    with contextlib.closing(_client(port)) as client:
        return bool(client.ping())


@dataclass(eq=False)  # compared and hashed by identity
class RedisNode:
    """One redis-server process of ours, restartable on the same port and folder.

    The folder keeps nodes.conf, so a cluster node started again rejoins its cluster
    (a master that was failed over comes back as a replica of its successor). There is
    no persistence: a restarted node has no data of its own.
    """

    name: str
    port: int
    folder: Path
    args: Sequence[str] = ()
    bus_port: int | None = None  # the cluster bus (cluster nodes only)
    timeout: float = 30.0
    _stack: contextlib.ExitStack = field(default_factory=contextlib.ExitStack, repr=False)
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def address(self) -> str:
        return f"{HOST}:{self.port}"

    @property
    def url(self) -> str:
        return f"redis://{self.address}"

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def argv(self) -> list[str]:
        argv = [
            _executable("redis-server"),
            "--port", str(self.port),
            "--bind", HOST,
            "--dir", str(self.folder),
            "--save", "",
            "--appendonly", "no",
            "--daemonize", "no",
            # DEBUG SLEEP etc. from loopback: another way for tests to make a server hang.
            "--enable-debug-command", "local",
            # A replica's full sync starts at once (Redis waits 5 s by default for more
            # replicas to share one transfer).
            "--repl-diskless-sync-delay", "0",
        ]  # fmt: skip
        if self.bus_port is not None:
            argv += [
                "--cluster-enabled", "yes",
                "--cluster-config-file", "nodes.conf",
                "--cluster-node-timeout", str(NODE_TIMEOUT_MS),
                "--cluster-port", str(self.bus_port),
                # Any replica may take over, however long its master has been gone.
                "--cluster-replica-validity-factor", "0",
            ]  # fmt: skip
        return [*argv, *self.args]

    def start(self) -> RedisNode:
        """Run the server (again) and wait until it answers PING."""
        if self.running:
            raise RuntimeError(f"{self.name} already runs")
        self._stack = contextlib.ExitStack()
        self.proc = self._stack.enter_context(
            run_server(
                self.name,
                self.argv(),
                self.port,
                cwd=self.folder,
                ready=lambda: _pings(self.port),
                timeout=self.timeout,
            )
        )
        return self

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after a grace period (a clean shutdown)."""
        self.thaw()
        self._stack.close()
        self.proc = None

    def kill(self) -> None:
        """SIGKILL: the server dies at once, as in a crash."""
        if self.proc is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)
        self.stop()

    def freeze(self) -> None:
        """SIGSTOP: the kernel still accepts connections, nothing answers."""
        assert self.proc is not None, f"{self.name} does not run"
        os.kill(self.proc.pid, signal.SIGSTOP)
        stat = Path(f"/proc/{self.proc.pid}/stat")
        deadline = time.monotonic() + 10
        while stat.is_file() and stat.read_text().rsplit(")", 1)[1].split()[0] != "T":
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.name} did not stop on SIGSTOP")
            time.sleep(0.01)

    def thaw(self) -> None:
        """SIGCONT after freeze() (harmless otherwise)."""
        if self.running:
            assert self.proc is not None
            os.kill(self.proc.pid, signal.SIGCONT)

    def client(self, timeout: float = 2.0) -> Any:
        """A plain redis-py client on this node (decode_responses=True); close it."""
        return _client(self.port, timeout)

    def log(self) -> str:
        return log_tail(cache_dir() / "logs" / f"{self.name}-{self.port}.log")


@contextlib.contextmanager
def _folder(prefix: str) -> Iterator[Path]:
    with tempfile.TemporaryDirectory(dir=cache_dir(), prefix=prefix) as tmp:
        yield Path(tmp)


@contextlib.contextmanager
def dedicated_redis(
    port: int | None = None, *args: str, timeout: float = 30.0
) -> Iterator[RedisNode]:
    """A standalone server of the caller's own, to stop, kill, freeze or start again."""
    with _folder("redis-") as folder:
        node = RedisNode("redis", port or free_port(), folder, args, timeout=timeout)
        node.start()
        try:
            yield node
        finally:
            node.stop()


@contextlib.contextmanager
def redis_server(port: int | None = None, timeout: float = 30.0) -> Iterator[str]:
    """Run a standalone redis-server; yield "redis://127.0.0.1:PORT"."""
    with dedicated_redis(port, timeout=timeout) as node:
        yield node.url


# ------------------------------------------------------------------ the cluster


@dataclass
class ClusterView:
    """CLUSTER NODES as one node sees it."""

    masters: dict[str, list[tuple[int, int]]]  # "host:port" -> slot ranges, failed ones left out
    replicas: dict[str, str]  # replica "host:port" -> its master's "host:port"
    failed: set[str]  # nodes flagged fail (or fail?)


def _address(field_: str) -> str:
    # "127.0.0.1:7000@17000[,hostname]"
    return field_.split("@", 1)[0]


def cluster_view(text: str) -> ClusterView:
    by_id: dict[str, str] = {}
    rows = [line.split() for line in text.splitlines() if line.strip()]
    for row in rows:
        by_id[row[0]] = _address(row[1])
    masters: dict[str, list[tuple[int, int]]] = {}
    replicas: dict[str, str] = {}
    failed: set[str] = set()
    for row in rows:
        address, flags = by_id[row[0]], set(row[2].split(","))
        if flags & {"fail", "fail?", "noaddr", "handshake"}:
            failed.add(address)
            continue
        if "master" in flags:
            ranges = []
            for item in row[8:]:
                if item.startswith("["):
                    continue  # a slot being migrated or imported
                low, _, high = item.partition("-")
                ranges.append((int(low), int(high or low)))
            masters[address] = sorted(ranges)
        elif "slave" in flags and row[3] in by_id:
            replicas[address] = by_id[row[3]]
    return ClusterView(masters, replicas, failed)


@dataclass
class RedisCluster:
    """Six nodes, three of them masters; `url` lists the masters it was formed with."""

    nodes: list[RedisNode]
    url: str
    seeds: list[RedisNode]
    formed_in: float = 0.0  # seconds from the first server start to cluster_state:ok

    def node(self, address_or_port: str | int) -> RedisNode:
        port = int(str(address_or_port).rsplit(":", 1)[-1])
        return next(n for n in self.nodes if n.port == port)

    def running(self) -> list[RedisNode]:
        return [n for n in self.nodes if n.running]

    def view(self) -> ClusterView:
        """The topology as a running node sees it."""
        errors = []
        for node in self.running():
            try:
                with contextlib.closing(node.client(1.0)) as client:
                    return cluster_view(client.execute_command("CLUSTER", "NODES"))
            except Exception as exc:  # a frozen or starting node: ask the next one
                errors.append(f"{node.address}: {exc!r}")
        raise RuntimeError(f"no cluster node answers: {errors}")

    def masters(self) -> list[RedisNode]:
        """The nodes serving slots now (after a failover, the promoted replicas)."""
        return [self.node(a) for a, slots in self.view().masters.items() if slots]

    def replicas(self) -> list[RedisNode]:
        return [self.node(a) for a in self.view().replicas]

    def replicas_of(self, master: RedisNode) -> list[RedisNode]:
        return [self.node(r) for r, m in self.view().replicas.items() if m == master.address]

    def master_for(self, key: str | bytes) -> RedisNode:
        """The master serving the slot of `key` (hash tags respected)."""
        from redis.crc import key_slot

        slot = key_slot(key.encode() if isinstance(key, str) else key)
        for address, ranges in self.view().masters.items():
            if any(low <= slot <= high for low, high in ranges):
                return self.node(address)
        raise RuntimeError(f"no master serves slot {slot}")

    def wait_for_failover(
        self,
        old_master: RedisNode,
        replicas: Sequence[RedisNode] | None = None,
        timeout: float = 30.0,
    ) -> RedisNode:
        """After old_master was killed or frozen, wait until one of its replicas took over
        its slots and the cluster is ok again; return that replica, now a master.

        `replicas`: old_master's replicas from before the fault; by default they are read
        now, which works until the cluster has noticed the fault (NODE_TIMEOUT_MS).
        """
        if replicas is None:
            replicas = self.replicas_of(old_master)
        if not replicas:
            raise RuntimeError(f"{old_master.address} has no replica to fail over to")
        deadline = time.monotonic() + timeout
        while True:
            with contextlib.suppress(RuntimeError):
                masters = self.view().masters
                promoted = [r for r in replicas if masters.get(r.address)]
                if promoted:
                    self.wait_ok(max(1.0, deadline - time.monotonic()), skip={old_master})
                    return promoted[0]
            if time.monotonic() > deadline:
                raise RuntimeError(f"no failover of {old_master.address} in {timeout:.0f} s")
            time.sleep(0.05)

    def kill_master(self, key: str | bytes | None = None, timeout: float = 30.0) -> RedisNode:
        """SIGKILL the master serving `key` (else the first master), wait until its replica
        took over; return the killed node (start() it again to have it rejoin as a replica)."""
        old = self.master_for(key) if key is not None else self.masters()[0]
        replicas = self.replicas_of(old)
        old.kill()
        self.wait_for_failover(old, replicas, timeout)
        return old

    def wait_ok(
        self, timeout: float = 30.0, skip: set[RedisNode] | frozenset[RedisNode] = frozenset()
    ) -> None:
        """Wait until every running node (but `skip`) says cluster_state:ok, all slots are
        served, all agree on who serves them, and every replica is in sync."""
        deadline = time.monotonic() + timeout
        problem = "not checked"
        while time.monotonic() < deadline:
            problem = self._problem([n for n in self.running() if n not in skip])
            if problem is None:
                return
            time.sleep(0.05)
        logs = "\n".join(f"--- {n.address}\n{n.log()[-1500:]}" for n in self.nodes)
        raise RuntimeError(f"Redis Cluster not ok after {timeout:.0f} s: {problem}\n{logs}")

    def _problem(self, nodes: list[RedisNode]) -> str | None:
        checked = {n.address for n in nodes}
        topologies = []
        for node in nodes:
            try:
                with contextlib.closing(node.client(1.0)) as client:
                    info = client.execute_command("CLUSTER", "INFO")
                    if isinstance(info, dict):  # some redis-py versions parse it
                        info = "\n".join(f"{k}:{v}" for k, v in info.items())
                    fields = dict(
                        line.split(":", 1) for line in str(info).splitlines() if ":" in line
                    )
                    if fields.get("cluster_state") != "ok":
                        return f"{node.address}: cluster_state {fields.get('cluster_state')}"
                    if fields.get("cluster_slots_ok") != str(SLOTS):
                        return f"{node.address}: cluster_slots_ok {fields.get('cluster_slots_ok')}"
                    view = cluster_view(client.execute_command("CLUSTER", "NODES"))
                    if node.address in view.replicas:
                        replication = client.info("replication")
                        if replication.get("master_link_status") != "up":
                            return f"{node.address}: replica link {replication}"
                        if replication.get("master_sync_in_progress"):
                            return f"{node.address}: replica still syncing"
            except Exception as exc:
                return f"{node.address}: {exc!r}"
            # Who serves which slots, and which (checked) node replicates which master.
            slot_map = {a: r for a, r in view.masters.items() if r}
            replica_map = {r: m for r, m in view.replicas.items() if r in checked}
            topologies.append((slot_map, replica_map))
        if any(t != topologies[0] for t in topologies):
            return f"nodes disagree on the topology: {topologies}"
        return None


@contextlib.contextmanager
def redis_cluster(
    replicas: int = 1, masters: int = 3, timeout: float = 60.0
) -> Iterator[RedisCluster]:
    """Form a Redis Cluster of `masters` masters with `replicas` replicas each; yield it
    (its .url is "redis+cluster://127.0.0.1:P1,127.0.0.1:P2,127.0.0.1:P3")."""
    cli = _executable("redis-cli")
    started = time.monotonic()
    with contextlib.ExitStack() as stack:
        count = masters * (1 + replicas)
        ports: list[int] = []
        while len(ports) < 2 * count:  # a client port and a cluster bus port each, all distinct
            port = free_port()
            if port not in ports:
                ports.append(port)
        nodes = []
        for index in range(count):
            folder = stack.enter_context(_folder(f"redis-cluster-{index}-"))
            nodes.append(
                RedisNode("redis-cluster", ports[2 * index], folder, bus_port=ports[2 * index + 1])
            )
        for node in nodes:
            stack.callback(node.stop)  # replicas stop first, so no master waits for them
        with concurrent.futures.ThreadPoolExecutor(len(nodes)) as pool:
            for future in [pool.submit(node.start) for node in nodes]:
                future.result()
        # redis-cli makes the first `masters` nodes masters; all run on one host, so it
        # warns that replicas share a host with their masters. Nothing to confirm: --cluster-yes.
        argv = [cli, "--cluster", "create", *(n.address for n in nodes)]
        argv += ["--cluster-replicas", str(replicas), "--cluster-yes"]
        result = subprocess.run(
            argv,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if result.returncode != 0 or "[OK] All 16384 slots covered" not in result.stdout:
            raise RuntimeError(
                f"redis-cli --cluster create failed ({result.returncode}):\n"
                f"{result.stdout[-3000:]}{result.stderr[-2000:]}"
            )
        cluster = RedisCluster(nodes, "", [])
        cluster.wait_ok(max(1.0, started + timeout - time.monotonic()))
        cluster.seeds = cluster.masters()
        cluster.url = "redis+cluster://" + ",".join(n.address for n in cluster.seeds)
        cluster.formed_in = time.monotonic() - started
        yield cluster
