"""The process layout of a distributed run and the environment each process gets.

A run has ``M`` logical machines, one per partition. Machine ``i`` runs graph server
``i`` (serving partition ``i``, listening on ``ip[i]:port[i]``) and ``T`` trainers with
global ranks ``i*T .. i*T+T-1``. DGL reads::

    every process   DGL_DIST_MODE=distributed DGL_IP_CONFIG DGL_CONF_PATH
                    DGL_NUM_SERVER=1 (servers per ip_config line)
                    DGL_NUM_CLIENT=M*T (all trainers; no sampler processes)
    servers         DGL_ROLE=server DGL_SERVER_ID=i DGL_GRAPH_FORMAT=csc
    trainers        DGL_ROLE=client DGL_NUM_SAMPLER=0 DGL_GROUP_ID=0
                    MASTER_ADDR MASTER_PORT RANK WORLD_SIZE LOCAL_RANK (torch.distributed)

Several logical machines may share a host (``--local N``, or several SLURM tasks on a
node). DGL names its shared-memory segments by graph and data name only, so only the
first server of a host (its *owner*) may use shared memory; the others run with it
disabled and with renamed key-value segments (``GENEN_DGL_SHM=renamed``). Trainers find
their "machine" by matching ip_config against the host's addresses, i.e. they all
attach to the owner's segments.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

SHM = "GENEN_DGL_SHM"  # "owner" or "renamed"
GRAPH_NAME = "GENEN_DGL_GRAPH_NAME"


@dataclass
class Layout:
    """Where every server and trainer of a run lives."""

    ips: list[str]  # IP of each logical machine (index = server id = partition id)
    ports: list[int]  # server port of each logical machine
    trainers_per_machine: int
    master_addr: str
    master_port: int
    part_config: Path
    graph_name: str

    @property
    def num_machines(self) -> int:
        return len(self.ips)

    @property
    def world_size(self) -> int:
        return self.num_machines * self.trainers_per_machine

    def ip_config(self) -> str:
        return "".join(f"{ip} {port}\n" for ip, port in zip(self.ips, self.ports))

    def owns_shared_memory(self, machine: int) -> bool:
        """True for the first logical machine on its host (it keeps DGL's shared memory)."""
        return self.ips.index(self.ips[machine]) == machine

    def local_rank(self, rank: int) -> int:
        """Index of trainer ``rank`` among the trainers on its host (picks its GPU)."""
        machine, t = divmod(rank, self.trainers_per_machine)
        before = self.ips[:machine].count(self.ips[machine])
        return before * self.trainers_per_machine + t

    def ranks(self, machine: int) -> range:
        t = self.trainers_per_machine
        return range(machine * t, (machine + 1) * t)

    def common_env(self, ip_config_file: Path) -> dict[str, str]:
        return {
            "DGL_DIST_MODE": "distributed", "DGL_IP_CONFIG": str(ip_config_file),
            "DGL_CONF_PATH": str(self.part_config), "DGL_NUM_SERVER": "1",
            "DGL_NUM_CLIENT": str(self.world_size), GRAPH_NAME: self.graph_name,
            "PYTHONUNBUFFERED": "1",
        }

    def server_env(self, machine: int, ip_config_file: Path) -> dict[str, str]:
        return {
            **self.common_env(ip_config_file), "DGL_ROLE": "server", "DGL_SERVER_ID": str(machine),
            "DGL_GRAPH_FORMAT": "csc", SHM: "owner" if self.owns_shared_memory(machine) else "renamed",
        }

    def trainer_env(self, rank: int, ip_config_file: Path) -> dict[str, str]:
        return {
            **self.common_env(ip_config_file), "DGL_ROLE": "client", "DGL_NUM_SAMPLER": "0", "DGL_GROUP_ID": "0",
            "MASTER_ADDR": self.master_addr, "MASTER_PORT": str(self.master_port), "RANK": str(rank),
            "WORLD_SIZE": str(self.world_size), "LOCAL_RANK": str(self.local_rank(rank)),
        }


def required(name: str) -> str:
    """An environment variable the launcher sets; a clear error when run by hand without it."""
    value = os.environ.get(name)
    if value is None:
        from genen_dgl.errors import InputError
        raise InputError(f"environment variable {name} is not set; start this through "
                         "python -m genen_dgl.distributed.launch")
    return value
