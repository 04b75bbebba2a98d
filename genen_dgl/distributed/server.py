"""``python -m genen_dgl.distributed.server``: one DGL graph server, configured by the
environment :mod:`genen_dgl.distributed.launch` sets (:mod:`genen_dgl.distributed.env`).

The server that owns its host's shared memory runs as DGL's own
``dgl.distributed.initialize`` would start it. Any other server on the same host runs
with ``disable_shared_mem=True`` and with its key-value segments renamed
(``NAME`` -> ``NAMEsrvID``): DGL names shared memory by graph / data name only, so a
second server would otherwise overwrite the first's graph structure, partition book
and features (the ``rowwise_pick.h ... et[...] < num_etypes`` crash).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from genen_dgl.dgl_compat import dgl
from genen_dgl.distributed.env import GRAPH_NAME, SHM, required

SHM_DIR = Path("/dev/shm")
KV_SEGMENT = re.compile(r"^(node|edge)~.*-kvdata-(srv(\d+))?$")


def renamed_segment(name: str, server_id: int) -> str:
    return f"{name}srv{server_id}"


def graph_segment(name: str, graph_name: str) -> bool:
    """True for the segments DGL names after a graph (``NAME``, ``NAME_node_meta``,
    ``NAMEg_0_csc_indptr``, ...)."""
    return re.match(rf"^{re.escape(graph_name)}($|_|g_\d+_)", name) is not None


def owned_segments(names: list[str], graph_name: str, server_id: int, owner: bool) -> list[str]:
    """The shared-memory segments among ``names`` that server ``server_id`` creates: the
    owner its graph's (:func:`graph_segment`) and the plain key-value segments
    (``node~gene~feat-kvdata-``), any other server only its renamed key-value segments
    (``node~gene~feat-kvdata-srvID``)."""
    out = []
    for name in names:
        m = KV_SEGMENT.match(name)
        if owner and (graph_segment(name, graph_name) or (m and m.group(2) is None)):
            out.append(name)
        elif not owner and m and m.group(3) == str(server_id):
            out.append(name)
    return out


def remove_segments(graph_name: str, server_id: int, owner: bool) -> list[str]:
    """Unlink the segments a (dead) server left in /dev/shm; return their names."""
    if not SHM_DIR.is_dir():
        return []
    gone = []
    for name in owned_segments(sorted(os.listdir(SHM_DIR)), graph_name, server_id, owner):
        try:
            (SHM_DIR / name).unlink()
            gone.append(name)
        except FileNotFoundError:
            pass
    return gone


def serve() -> None:
    """Load this server's partition and serve it until every trainer has exited."""
    kvstore, rpc, DistGraphServer = dgl.distributed.kvstore, dgl.distributed.rpc, dgl.distributed.DistGraphServer
    server_id = int(required("DGL_SERVER_ID"))
    owner = os.environ.get(SHM, "owner") == "owner"
    if not owner:
        create = kvstore.empty_shared_mem

        def renamed(name, is_create, shape, dtype):
            return create(renamed_segment(name, server_id), is_create, shape, dtype)

        kvstore.empty_shared_mem = renamed
    rpc.reset()  # what dgl.distributed.initialize does for a server, before building it
    server = DistGraphServer(
        server_id, required("DGL_IP_CONFIG"), int(required("DGL_NUM_SERVER")), int(required("DGL_NUM_CLIENT")),
        required("DGL_CONF_PATH"), disable_shared_mem=not owner,
        graph_format=os.environ.get("DGL_GRAPH_FORMAT", "csc").split(","),
    )
    server.start()


def main() -> int:
    required(GRAPH_NAME)
    serve()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
