"""Distributed training on DGL's DistGraph: graph servers, trainers, and their environment.

Processes are started by :mod:`genen_dgl.distributed.launch` (locally or inside a SLURM allocation),
which sets DGL's environment variables (:mod:`genen_dgl.distributed.env`).
"""
