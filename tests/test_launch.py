"""The launcher: layouts from SLURM's variables, supervision, clean shutdown (no DGL runs)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from genen_dgl.distributed.server import owned_segments
from genen_dgl.errors import InputError
from genen_dgl.distributed.launch import (HostLock, Supervisor, expand_tasks_per_node, local_layout, main, parse_nodelist,
                              slurm_layout, task_nodes)

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable


def slurm_env(**extra) -> dict[str, str]:
    env = {"SLURM_JOB_ID": "4242", "SLURM_STEP_ID": "0", "SLURM_JOB_NODELIST": "n[1-2]", "SLURM_NTASKS": "4",
           "SLURM_TASKS_PER_NODE": "2(x2)", "SLURM_PROCID": "2", "SLURM_NODEID": "1", "SLURM_LOCALID": "0"}
    env.update(extra)
    return env


RESOLVE = {"n1": "10.0.0.1", "n2": "10.0.0.2"}.__getitem__


def test_nodelist_and_tasks_per_node():
    assert parse_nodelist("node[01-03,7],gpu5") == ["node01", "node02", "node03", "node7", "gpu5"]
    assert expand_tasks_per_node("2(x3),1") == [2, 2, 2, 1]
    assert task_nodes([2, 2], "block") == [0, 0, 1, 1]
    assert task_nodes([2, 1], "cyclic") == [0, 1, 0]
    with pytest.raises(InputError, match="block and cyclic"):
        task_nodes([1], "plane")


def test_slurm_layout_block():
    layout, me = slurm_layout(slurm_env(), Path("p/genen.json"), "genen", 2, None, RESOLVE, {"10.0.0.2"})
    assert me == 2
    assert layout.ips == ["10.0.0.1", "10.0.0.1", "10.0.0.2", "10.0.0.2"]
    base = layout.ports[0]
    assert layout.ports == [base, base + 1, base + 2, base + 3] and layout.master_port == base + 4
    assert layout.master_addr == "10.0.0.1" and layout.world_size == 8
    assert [layout.owns_shared_memory(m) for m in range(4)] == [True, False, True, False]
    assert list(layout.ranks(2)) == [4, 5]
    assert [layout.local_rank(r) for r in range(8)] == [0, 1, 2, 3, 0, 1, 2, 3]
    again, _ = slurm_layout(slurm_env(SLURM_PROCID="0", SLURM_NODEID="0"), Path("p/genen.json"), "genen", 2, None,
                            RESOLVE, {"10.0.0.1"})
    assert again.ip_config() == layout.ip_config()  # every task derives the same ip_config


def test_slurm_layout_cyclic_and_checks():
    env = slurm_env(SLURM_DISTRIBUTION="cyclic", SLURM_PROCID="1", SLURM_NODEID="1")
    layout, _ = slurm_layout(env, Path("x.json"), "g", 1, 30000, RESOLVE, {"10.0.0.2"})
    assert layout.ips == ["10.0.0.1", "10.0.0.2", "10.0.0.1", "10.0.0.2"] and layout.ports[0] == 30000
    with pytest.raises(InputError, match="SLURM_NODEID is 0"):
        slurm_layout(slurm_env(SLURM_NODEID="0"), Path("x.json"), "g", 1, None, RESOLVE, {"10.0.0.1"})
    with pytest.raises(InputError, match="not an address of this machine"):
        slurm_layout(slurm_env(), Path("x.json"), "g", 1, None, RESOLVE, {"10.0.0.1"})
    with pytest.raises(InputError, match="SLURM_PROCID"):
        slurm_layout({k: v for k, v in slurm_env().items() if k != "SLURM_PROCID"}, Path("x.json"), "g", 1, None)


def test_slurm_layout_one_node_is_loopback():
    env = slurm_env(SLURM_JOB_NODELIST="vm", SLURM_TASKS_PER_NODE="2", SLURM_NTASKS="2", SLURM_PROCID="1",
                    SLURM_NODEID="0")
    layout, me = slurm_layout(env, Path("x.json"), "g", 1, None)
    assert me == 1 and layout.ips == ["127.0.0.1"] * 2 and layout.master_addr == "127.0.0.1"


def test_environment_of_each_role(tmp_path):
    layout = local_layout(Path("/p/genen.json"), "genen", 2, 2, 31000)
    assert layout.ip_config() == "127.0.0.1 31000\n127.0.0.1 31001\n"
    server = layout.server_env(1, tmp_path / "ip")
    assert server["DGL_ROLE"] == "server" and server["DGL_SERVER_ID"] == "1"
    assert server["DGL_NUM_SERVER"] == "1" and server["DGL_NUM_CLIENT"] == "4"
    assert server["DGL_GRAPH_FORMAT"] == "csc" and server["GENEN_DGL_SHM"] == "renamed"
    assert layout.server_env(0, tmp_path / "ip")["GENEN_DGL_SHM"] == "owner"
    trainer = layout.trainer_env(3, tmp_path / "ip")
    assert trainer["DGL_ROLE"] == "client" and trainer["DGL_NUM_SAMPLER"] == "0"
    assert (trainer["RANK"], trainer["WORLD_SIZE"], trainer["LOCAL_RANK"]) == ("3", "4", "3")
    assert trainer["MASTER_PORT"] == "31002" and trainer["DGL_CONF_PATH"] == "/p/genen.json"


def test_segments_of_each_server():
    names = ["genen", "genen_node_meta", "geneng_0_csc_indptr", "node~gene~feat-kvdata-",
             "node~gene~feat-kvdata-srv1", "edge~gene:interacts:gene~score-kvdata-srv2", "genenx", "torch_123"]
    assert owned_segments(names, "genen", 0, True) == names[:4]
    assert owned_segments(names, "genen", 1, False) == ["node~gene~feat-kvdata-srv1"]
    assert owned_segments(names, "genen", 2, False) == ["edge~gene:interacts:gene~score-kvdata-srv2"]


# ----------------------------------------------------------------------------- supervision

def sleeper(seconds: float = 60, code: int = 0, ignore_term: bool = False) -> list[str]:
    body = "import signal, sys, time\n"
    if ignore_term:
        body += "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
    body += f"print('up', flush=True)\ntime.sleep({seconds})\nsys.exit({code})\n"
    return [PY, "-c", body]


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_a_failed_trainer_stops_the_rest_and_names_itself():
    sup = Supervisor(grace=2.0)
    sup.start("server", 0, sleeper(), dict(os.environ))
    sup.start("server", 1, sleeper(), dict(os.environ))
    sup.start("trainer", 0, sleeper(), dict(os.environ))
    sup.start("trainer", 1, sleeper(0.5, code=3), dict(os.environ))
    t0 = time.monotonic()
    code, summary = sup.watch(timeout=30, server_linger=None)
    assert code == 11 and "trainer 1" in summary and "exit code 3" in summary
    assert time.monotonic() - t0 < 10
    assert not any(alive(c.popen.pid) for c in sup.children)


def test_a_child_ignoring_sigterm_is_killed_after_the_grace():
    sup = Supervisor(grace=0.5)
    stubborn = sup.start("server", 0, sleeper(ignore_term=True), dict(os.environ))
    sup.start("trainer", 0, sleeper(1.0, code=-1 & 0xFF), dict(os.environ))
    time.sleep(0.5)  # let the stubborn one install its handler
    code, _ = sup.watch(timeout=30, server_linger=None)
    assert code == 10 and stubborn.popen.returncode == -signal.SIGKILL


def test_timeout_and_signal_stop_everything():
    sup = Supervisor(grace=1.0)
    sup.start("trainer", 0, sleeper(), dict(os.environ))
    code, summary = sup.watch(timeout=1.0, server_linger=None)
    assert code == 124 and "timeout" in summary
    sup = Supervisor(grace=1.0)
    sup.start("trainer", 0, sleeper(), dict(os.environ))
    threading.Timer(0.5, os.kill, (os.getpid(), signal.SIGTERM)).start()
    code, _ = sup.watch(timeout=30, server_linger=None)
    assert code == 128 + signal.SIGTERM and sup.children[0].popen.returncode is not None


def test_children_die_with_a_killed_launcher():
    """Even a SIGKILLed launcher leaves nothing behind (PR_SET_PDEATHSIG)."""
    script = ("import os, sys, time\nfrom genen_dgl.distributed.launch import Supervisor\n"
              f"c = Supervisor().start('trainer', 0, {sleeper()!r}, dict(os.environ))\n"
              "print(c.popen.pid, file=sys.stderr, flush=True)\ntime.sleep(60)\n")
    parent = subprocess.Popen([PY, "-c", script], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                              cwd=ROOT)
    child = int(parent.stderr.readline().split()[-1])
    assert alive(child)
    parent.kill()
    parent.wait()
    deadline = time.monotonic() + 5
    while alive(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not alive(child)


def test_host_lock_refuses_a_second_run(tmp_path):
    with HostLock(tmp_path / "lock"):
        with pytest.raises(InputError, match="already runs"):
            HostLock(tmp_path / "lock").__enter__()
    with HostLock(tmp_path / "lock"):
        pass


# --------------------------------------------------------------------------------- the CLI

@pytest.fixture(scope="module")
def parts(sample_spec, tmp_path_factory):
    from genen_dgl.partition import main as partition
    out = tmp_path_factory.mktemp("launch") / "parts"
    assert partition(["--data", str(sample_spec), "--num-parts", "2", "--out", str(out)]) == 0
    return out


def test_dry_run_prints_the_layout(parts, capsys):
    assert main(["--parts", str(parts), "--local", "2", "--trainers", "2", "--port", "31000", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("127.0.0.1 31000\n127.0.0.1 31001\n")
    assert "trainer 3:" in out and "'DGL_NUM_CLIENT': '4'" in out


@pytest.mark.parametrize("args, message", [
    (["--local", "3"], "3 logical machine(s) but 2 partition(s)"),
    ([], "not inside a SLURM job step"),
    (["--local", "2", "--trainers", "0"], "--trainers 0"),
])
def test_bad_layouts_are_one_line_errors(parts, capsys, monkeypatch, args, message):
    monkeypatch.delenv("SLURM_PROCID", raising=False)
    assert main(["--parts", str(parts), *args]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and message in err and "\n" not in err


def test_not_a_partition_folder(tmp_path, capsys):
    assert main(["--parts", str(tmp_path), "--local", "1"]) == 2
    assert "not a genen-dgl partition folder" in capsys.readouterr().err
