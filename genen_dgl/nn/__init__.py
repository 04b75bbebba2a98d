"""Genen's layers as plain torch ops on :class:`~genen_dgl.nn.sparse.MessageBlock` s: one
layer per module (formula in its docstring), the model that stacks them."""
