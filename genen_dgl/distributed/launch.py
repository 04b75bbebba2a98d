"""``python -m genen_dgl.distributed.launch``: start DGL graph servers and trainers, without ssh.

Two ways to lay a run out (one logical machine per partition; each runs one graph server
and ``--trainers`` trainers):

``--local N``
    N logical machines on 127.0.0.1 with distinct ports, all started by this process.
    For laptops and tests.
inside a SLURM allocation (``srun python -m genen_dgl.distributed.launch ...``, one task per partition)
    each task is one logical machine: the ip_config comes from the step's node list
    (``scontrol show hostnames``), the task layout (``SLURM_STEP_TASKS_PER_NODE``,
    ``SLURM_DISTRIBUTION`` block or cyclic) and the task's ``SLURM_PROCID``; ports and
    the torch master derive from the job id. Several tasks may share a node.

Everything after ``--`` goes to ``python -m genen_dgl.distributed.train``. Each child's
output is relayed line by line, prefixed ``[server I]`` / ``[trainer R]``.

If a process fails, the others are stopped (SIGTERM, then SIGKILL after ``--grace``
seconds) and the exit code names the first failure::

    0        every process exited 0
    2        bad input (one line on stderr)
    10+R     trainer of global rank R failed first (R capped at 89)
    100+I    graph server I failed first (I capped at 23)
    124      --timeout passed
    128+S    this launcher got signal S (e.g. 143 for SIGTERM from scancel / srun)

Children die with the launcher (``PR_SET_PDEATHSIG``), and the shared-memory segments
of this launcher's servers are removed at the end, however the run ended. One run per
host at a time: DGL's shared-memory names do not say which run they belong to, so a
second run's servers are refused (locks in /dev/shm).
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import fcntl
import logging
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from genen_dgl.distributed.env import Layout
from genen_dgl.errors import InputError, cli
from genen_dgl.provenance import add_version

log = logging.getLogger("genen_dgl.distributed.launch")

PACKAGE_ROOT = Path(__file__).resolve().parents[2]
LOCK_DIR = Path("/dev/shm")
POLL_S = 0.1
TIMEOUT_EXIT = 124
_PR_SET_PDEATHSIG = 1


# ------------------------------------------------------------------------------ layouts

def free_port_block(count: int, host: str = "127.0.0.1", tries: int = 200) -> int:
    """A base port such that ``base .. base+count-1`` can all be bound now."""
    rng = random.Random(os.getpid() ^ time.monotonic_ns())
    for _ in range(tries):
        base = rng.randrange(20000, 60000 - count)
        socks = []
        try:
            for port in range(base, base + count):
                s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                socks.append(s)
                s.bind((host, port))
            return base
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise InputError(f"found no {count} consecutive free ports on {host}")


def local_layout(part_config: Path, graph_name: str, machines: int, trainers: int, port: int | None) -> Layout:
    base = port or free_port_block(machines + 1)
    return Layout(["127.0.0.1"] * machines, [base + i for i in range(machines)], trainers,
                  "127.0.0.1", base + machines, part_config, graph_name)


def expand_nodelist(nodelist: str) -> list[str]:
    """Host names of a SLURM node list: ``scontrol show hostnames``, or
    :func:`parse_nodelist` where scontrol is missing."""
    if shutil.which("scontrol"):
        out = subprocess.run(["scontrol", "show", "hostnames", nodelist], capture_output=True, text=True)
        if out.returncode == 0 and out.stdout.split():
            return out.stdout.split()
    return parse_nodelist(nodelist)


def parse_nodelist(nodelist: str) -> list[str]:
    """The common ``name[01-03,7],other`` node-list forms, without scontrol."""
    hosts = []
    for prefix, ranges, plain in re.findall(r"([^,\[]+)\[([^\]]+)\]|([^,\[\]]+)", nodelist):
        if plain:
            hosts.append(plain)
            continue
        for part in ranges.split(","):
            lo, _, hi = part.partition("-")
            hosts += [f"{prefix}{i:0{len(lo)}d}" for i in range(int(lo), int(hi or lo) + 1)]
    return hosts


def expand_tasks_per_node(text: str) -> list[int]:
    """``2(x3),1`` -> ``[2, 2, 2, 1]``."""
    counts = []
    for item in text.split(","):
        m = re.fullmatch(r"(\d+)(?:\(x(\d+)\))?", item.strip())
        if not m:
            raise InputError(f"cannot read SLURM tasks per node {text!r}")
        counts += [int(m.group(1))] * int(m.group(2) or 1)
    return counts


def task_nodes(tasks_per_node: list[int], distribution: str) -> list[int]:
    """Node index of each task id under SLURM's block or cyclic distribution."""
    if distribution == "block":
        return [n for n, c in enumerate(tasks_per_node) for _ in range(c)]
    if distribution == "cyclic":
        left, nodes = list(tasks_per_node), []
        while any(left):
            for n in range(len(left)):
                if left[n]:
                    nodes.append(n)
                    left[n] -= 1
        return nodes
    raise InputError(f"SLURM distribution {distribution!r}: the launcher supports block and cyclic")


def local_addresses() -> set[str]:
    from genen_dgl.dgl_compat import dgl  # imported here: the launcher itself needs no DGL

    return set(dgl.distributed.rpc_client.local_ip4_addr_list()) | {"127.0.0.1"}


def slurm_layout(env: dict[str, str], part_config: Path, graph_name: str, trainers: int, port: int | None,
                 resolve=socket.gethostbyname, local_ips=None) -> tuple[Layout, int]:
    """The run's layout from SLURM's variables, and this task's logical machine.
    ``resolve`` (host -> IP) and ``local_ips`` (this host's addresses) are for tests."""
    def var(*names: str) -> str:
        for n in names:
            if env.get(n):
                return env[n]
        raise InputError(f"SLURM variable {names[0]} is not set; run the launcher under srun, or pass --local N")

    hosts = expand_nodelist(var("SLURM_STEP_NODELIST", "SLURM_JOB_NODELIST", "SLURM_NODELIST"))
    ntasks = int(var("SLURM_STEP_NUM_TASKS", "SLURM_NTASKS"))
    procid, nodeid = int(var("SLURM_PROCID")), int(var("SLURM_NODEID"))
    per_node = expand_tasks_per_node(var("SLURM_STEP_TASKS_PER_NODE", "SLURM_TASKS_PER_NODE"))
    if len(per_node) != len(hosts) or sum(per_node) != ntasks:
        raise InputError(f"SLURM layout does not add up: hosts {hosts}, tasks per node {per_node}, ntasks {ntasks}")
    distribution = env.get("SLURM_DISTRIBUTION", "block").split(":")[0] or "block"
    nodes = task_nodes(per_node, distribution)
    if nodes[procid] != nodeid:
        raise InputError(f"task {procid} should be on node {nodes[procid]} under {distribution} distribution, "
                         f"but SLURM_NODEID is {nodeid}")
    if len(hosts) == 1:
        ips = ["127.0.0.1"] * ntasks
    else:
        host_ip = {}
        for h in hosts:
            try:
                host_ip[h] = resolve(h)
            except OSError as err:
                raise InputError(f"cannot resolve SLURM host {h!r}: {err}") from None
        mine = host_ip[hosts[nodeid]]
        if mine not in (local_addresses() if local_ips is None else local_ips):
            raise InputError(f"host {hosts[nodeid]} resolves to {mine}, which is not an address of this machine; "
                             "DGL could not tell which partition is local")
        ips = [host_ip[hosts[n]] for n in nodes]
    job = int(env.get("SLURM_JOB_ID", "0") or 0)
    step = int(env.get("SLURM_STEP_ID", "0") or 0)
    base = port or 20000 + (job * 131 + step * 977) % 20000
    layout = Layout(ips, [base + i for i in range(ntasks)], trainers, ips[0], base + ntasks, part_config, graph_name)
    return layout, procid


# ---------------------------------------------------------------------------- processes

try:  # looked up before any fork: the child only calls it
    _prctl = ctypes.CDLL(None, use_errno=True).prctl
except (OSError, AttributeError):  # not Linux
    _prctl = None


def _die_with_parent() -> None:
    """In the child, before exec: get SIGKILL when the launcher dies, however it dies."""
    if _prctl is not None:
        _prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL))


def describe_exit(code: int) -> str:
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"


@dataclass
class Child:
    role: str  # "server" or "trainer"
    index: int  # server id or global rank
    popen: subprocess.Popen
    relay: threading.Thread
    ended_at: float | None = None

    @property
    def label(self) -> str:
        return f"{self.role} {self.index}"

    @property
    def failure_code(self) -> int:
        return 100 + min(self.index, 23) if self.role == "server" else 10 + min(self.index, 89)


def _relay(stream, prefix: bytes, lock: threading.Lock) -> None:
    out = sys.stdout.buffer
    for line in iter(stream.readline, b""):
        with lock:
            out.write(prefix + line if line.endswith(b"\n") else prefix + line + b"\n")
            out.flush()
    stream.close()


@dataclass
class Supervisor:
    """Starts children, watches them, stops them all when one fails."""

    grace: float = 5.0
    children: list[Child] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _signal: int | None = None

    def start(self, role: str, index: int, cmd: list[str], env: dict[str, str]) -> Child:
        popen = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                 stdin=subprocess.DEVNULL, start_new_session=True, preexec_fn=_die_with_parent)
        relay = threading.Thread(target=_relay, args=(popen.stdout, f"[{role} {index}] ".encode(), self._lock),
                                 daemon=True)
        relay.start()
        child = Child(role, index, popen, relay)
        self.children.append(child)
        log.info("started %s: pid %d", child.label, popen.pid)
        return child

    def _on_signal(self, signum, _frame) -> None:
        self._signal = signum

    def watch(self, timeout: float | None, server_linger: float | None) -> tuple[int, str]:
        """Wait for the children; return (exit code, one-line summary)."""
        previous = {s: signal.signal(s, self._on_signal) for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)}
        start = time.monotonic()
        try:
            while True:
                now = time.monotonic()
                for c in self.children:
                    if c.ended_at is None and c.popen.poll() is not None:
                        c.ended_at = now
                failed = [c for c in self.children if c.ended_at is not None and c.popen.returncode != 0]
                if failed:
                    # seen in the same poll: a process killed by a signal before one that exited
                    # with an error (its peers' collectives fail because it died)
                    first = min(failed, key=lambda c: (c.ended_at, c.popen.returncode > 0, c.role != "trainer",
                                                       c.index))
                    stopped = self.stop()
                    return first.failure_code, (f"{first.label} (pid {first.popen.pid}) failed: "
                                                f"{describe_exit(first.popen.returncode)}; {stopped}")
                if all(c.ended_at is not None for c in self.children):
                    return 0, f"all {len(self.children)} processes exited 0 in {now - start:.1f} s"
                if self._signal is not None:
                    sig = self._signal
                    return 128 + sig, f"got {signal.Signals(sig).name}; {self.stop()}"
                if timeout and now - start > timeout:
                    return TIMEOUT_EXIT, f"timeout after {timeout:.0f} s; {self.stop()}"
                trainers = [c for c in self.children if c.role == "trainer"]
                if server_linger is not None and trainers and all(c.ended_at for c in trainers):
                    done = max(c.ended_at for c in trainers)
                    if now - done > server_linger:
                        return 0, (f"trainers finished but servers still ran {server_linger:.0f} s later; "
                                   f"{self.stop()}")
                time.sleep(POLL_S)
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)

    def stop(self) -> str:
        """SIGTERM every live child's process group, SIGKILL what is left after the grace."""
        t0 = time.monotonic()
        alive = [c for c in self.children if c.popen.poll() is None]
        for sig in (signal.SIGTERM, signal.SIGKILL):
            for c in alive:
                try:
                    os.killpg(c.popen.pid, sig)
                except ProcessLookupError:
                    pass
            deadline = time.monotonic() + (self.grace if sig == signal.SIGTERM else 10.0)
            while time.monotonic() < deadline and any(c.popen.poll() is None for c in alive):
                time.sleep(0.05)
            alive = [c for c in alive if c.popen.poll() is None]
            if not alive:
                break
        for c in self.children:
            c.popen.wait()
            c.relay.join(timeout=2.0)
        return f"stopped the others in {time.monotonic() - t0:.1f} s"


def leftovers(graph_name: str, mentioning: str | Path | None = None) -> tuple[list[int], list[str]]:
    """Processes of genen-dgl's distributed modules still running on this host (with
    ``mentioning``: only those whose command line or environment holds that text, e.g. the
    partition folder of one run, so that other jobs on the host are not counted), and the
    shared-memory segments of graph ``graph_name`` (or any DGL key-value data) in /dev/shm."""
    from genen_dgl.distributed.server import KV_SEGMENT, SHM_DIR, graph_segment
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
            if not any(a.startswith(b"genen_dgl.distributed.") for a in cmdline.split(b"\0")):
                continue
            if mentioning is not None and str(mentioning).encode() not in cmdline + (entry / "environ").read_bytes():
                continue
        except OSError:  # gone meanwhile, or not ours to read
            continue
        pids.append(int(entry.name))
    names = sorted(os.listdir(SHM_DIR)) if SHM_DIR.is_dir() else []
    return pids, [n for n in names if KV_SEGMENT.match(n) or graph_segment(n, graph_name)]


# ---------------------------------------------------------------------------- the run

def lock_file(layout: Layout, machine: int) -> Path:
    """The host lock of a server: one for the owner of the shared memory, one per renamed
    server id (whose segments are named ``...srvID``)."""
    if layout.owns_shared_memory(machine):
        return LOCK_DIR / ".genen-dgl.lock"
    return LOCK_DIR / f".genen-dgl-srv{machine}.lock"


class HostLock:
    """While held, no other run on this host uses the same shared-memory names."""

    def __init__(self, path: Path):
        self.path, self.fh = path, None

    def __enter__(self) -> "HostLock":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.fh = open(self.path, "a+")
        try:
            fcntl.flock(self.fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self.fh.seek(0)
            holder = self.fh.read().strip() or "another run"
            self.fh.close()
            raise InputError(f"this host already runs a distributed genen-dgl job ({holder}); DGL's shared memory "
                             "cannot hold two at once", self.path) from None
        self.fh.seek(0)
        self.fh.truncate()
        self.fh.write(f"pid {os.getpid()} on {socket.gethostname()}\n")
        self.fh.flush()
        return self

    def __exit__(self, *exc) -> None:
        self.fh.truncate(0)
        fcntl.flock(self.fh, fcntl.LOCK_UN)
        self.fh.close()


def child_env(extra: dict[str, str], threads: int) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(PACKAGE_ROOT)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    env.setdefault("OMP_NUM_THREADS", str(threads))
    env.update(extra)
    return env


def available_cpus(env: dict[str, str]) -> int:
    if env.get("SLURM_CPUS_PER_TASK"):
        return int(env["SLURM_CPUS_PER_TASK"])
    return len(os.sched_getaffinity(0))


def run(layout: Layout, machines: list[int], trainer_args: list[str], timeout: float | None, grace: float,
        trainer_module: str = "genen_dgl.distributed.train", python: str = sys.executable) -> int:
    """Start this launcher's servers and trainers, supervise them, clean up; return the exit code."""
    from genen_dgl.distributed.server import remove_segments

    procs = len(machines) * (1 + layout.trainers_per_machine)
    threads = max(1, available_cpus(dict(os.environ)) // procs)
    workdir = Path(tempfile.mkdtemp(prefix="genen-launch-"))
    ip_config = workdir / "ip_config.txt"
    ip_config.write_text(layout.ip_config())
    sup = Supervisor(grace=grace)
    with contextlib.ExitStack() as stack:
        stack.callback(shutil.rmtree, workdir, ignore_errors=True)
        for m in machines:
            stack.enter_context(HostLock(lock_file(layout, m)))
        stack.callback(cleanup, sup, layout, machines)
        for m in machines:
            remove_segments(layout.graph_name, m, layout.owns_shared_memory(m))  # a killed run's leftovers
        log.info("%d logical machine(s) here of %d; ip_config:\n%s", len(machines), layout.num_machines,
                 layout.ip_config().rstrip())
        for m in machines:
            sup.start("server", m, [python, "-m", "genen_dgl.distributed.server"],
                      child_env(layout.server_env(m, ip_config), threads))
        for m in machines:
            for rank in layout.ranks(m):
                sup.start("trainer", rank, [python, "-m", trainer_module, *trainer_args],
                          child_env(layout.trainer_env(rank, ip_config), threads))
        all_local = len(machines) == layout.num_machines
        code, summary = sup.watch(timeout, server_linger=30.0 if all_local else None)
    (log.info if code == 0 else log.error)("%s", summary)
    return code


def cleanup(sup: Supervisor, layout: Layout, machines: list[int]) -> None:
    """However the run ended: no child left, no shared memory of ours left."""
    from genen_dgl.distributed.server import remove_segments

    if sup.children:
        sup.stop()
    for m in machines:
        gone = remove_segments(layout.graph_name, m, layout.owns_shared_memory(m))
        if gone:
            log.info("removed %d shared-memory segment(s) left by server %d", len(gone), m)


@cli
def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    trainer_args = argv[argv.index("--") + 1:] if "--" in argv else []
    own = argv[:argv.index("--")] if "--" in argv else argv
    parser = argparse.ArgumentParser(prog="python -m genen_dgl.distributed.launch",
                                     description=__doc__.split("\n\n")[0],
                                     usage="%(prog)s --parts DIR [--local N] [options] -- [trainer options]",
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add_version(parser)
    parser.add_argument("--parts", type=Path, required=True, help="partition folder (python -m genen_dgl.partition)")
    parser.add_argument("--local", type=int, metavar="N", help="N logical machines on this host (default: SLURM)")
    parser.add_argument("--trainers", type=int, default=1, help="trainers per logical machine")
    parser.add_argument("--port", type=int, help="first server port (default: free ports / from the SLURM job id)")
    parser.add_argument("--timeout", type=float, help="stop everything after this many seconds (exit 124)")
    parser.add_argument("--grace", type=float, default=5.0, help="seconds between SIGTERM and SIGKILL when stopping")
    parser.add_argument("--trainer-module", default="genen_dgl.distributed.train",
                        help="module each trainer runs (genen_dgl.distributed.check: a sampling self-test)")
    parser.add_argument("--dry-run", action="store_true", help="print the layout and environment, start nothing")
    args = parser.parse_args(own)
    if logging.getLogger().isEnabledFor(logging.DEBUG) and "--debug" not in trainer_args:
        trainer_args.append("--debug")  # the cli wrapper took it from our arguments
    if args.trainers < 1:
        raise InputError(f"--trainers {args.trainers}: expected at least 1")
    if args.local is not None and args.local < 1:
        raise InputError(f"--local {args.local}: expected at least 1 logical machine")
    from genen_dgl.partition import PartitionInfo
    info = PartitionInfo.load(args.parts)
    if args.local is not None:
        layout, machines = local_layout(info.part_config, info.graph_name, args.local, args.trainers, args.port), \
            list(range(args.local))
    elif os.environ.get("SLURM_PROCID") is not None:
        layout, me = slurm_layout(dict(os.environ), info.part_config, info.graph_name, args.trainers, args.port)
        machines = [me]
    else:
        raise InputError("not inside a SLURM job step (no SLURM_PROCID): pass --local N, or start with srun")
    if layout.num_machines != info.num_parts:
        raise InputError(f"{layout.num_machines} logical machine(s) but {info.num_parts} partition(s): run one "
                         "SLURM task (or --local machine) per partition", info.root)
    if args.dry_run:
        ip_config = Path("<ip_config>")
        print(layout.ip_config(), end="")
        for m in machines:
            print(f"server {m}: {layout.server_env(m, ip_config)}")
            for r in layout.ranks(m):
                print(f"trainer {r}: {layout.trainer_env(r, ip_config)}")
        return 0
    return run(layout, machines, trainer_args, args.timeout, args.grace, args.trainer_module)


if __name__ == "__main__":
    raise SystemExit(main())
