"""Packed linear layers: sparse and quantised weights with CPU kernels that read them directly."""

from .sparse import SparseLinear, pack_sparse, sparse_matmul, unpack_sparse

__all__ = ["SparseLinear", "pack_sparse", "sparse_matmul", "unpack_sparse"]
