"""Nested training state as bytes, without pickle.

:func:`encode` and :func:`decode` handle dicts (ordered or not, keys of any scalar kind below),
lists and tuples of torch tensors, numpy arrays and scalars, Python ints of any size, floats
(NaN, infinities and -0.0 kept exactly), bools, None, strings, bytes and torch dtypes: what
``state_dict()``, ``torch.get_rng_state()``, ``torch.Generator.get_state()``, numpy bit-generator
states and ``random.getstate()`` return. Tensors come back bit-identical, with their dtype and
shape, contiguous and on the CPU.

Layout: the magic ``NSSNAP1\\n``, the header length (8 bytes, little endian), a JSON header (the
tree, arrays replaced by references into the data section), then the raw bytes of every array,
each aligned to 8 bytes. Decoding builds only the types above; nothing is ever unpickled.
"""
from __future__ import annotations

import json
import math
from collections import OrderedDict

import numpy as np
import torch

from ..errors import NeurosimError

MAGIC = b"NSSNAP1\n"

_TORCH_DTYPES = {str(d).removeprefix("torch."): d for d in (
    torch.float16, torch.bfloat16, torch.float32, torch.float64, torch.complex64, torch.complex128,
    torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64, torch.bool,
    torch.uint16, torch.uint32, torch.uint64)}


class _Encoder:
    def __init__(self):
        self.arrays: list[np.ndarray] = []

    def _array(self, a: np.ndarray) -> int:
        self.arrays.append(np.ascontiguousarray(a).reshape(-1).view(np.uint8))
        return len(self.arrays) - 1

    def node(self, x, where: str):
        if x is None or isinstance(x, (bool, str)):
            return x
        if isinstance(x, torch.Tensor):
            if x.layout != torch.strided:
                raise NeurosimError(f"cannot store {where}: {x.layout} tensors are not supported")
            name = str(x.dtype).removeprefix("torch.")
            if name not in _TORCH_DTYPES:
                raise NeurosimError(f"cannot store {where}: unsupported tensor dtype {x.dtype}")
            t = x.detach().cpu().resolve_conj().resolve_neg().contiguous()
            raw = t.reshape(-1).view(torch.uint8) if t.numel() else torch.empty(0, dtype=torch.uint8)
            return {"tensor": self._array(raw.numpy()), "dtype": name, "shape": list(t.shape)}
        if isinstance(x, np.ndarray) or isinstance(x, np.generic):
            a = np.asarray(x)
            if a.dtype.hasobject:
                raise NeurosimError(f"cannot store {where}: numpy arrays of Python objects are not supported")
            kind = "ndarray" if isinstance(x, np.ndarray) else "npscalar"
            return {kind: self._array(a), "dtype": a.dtype.str, "shape": list(a.shape)}
        if isinstance(x, int):
            return int(x)
        if isinstance(x, float):
            return {"float": float.hex(x)}
        if isinstance(x, bytes):
            return {"bytes": self._array(np.frombuffer(x, np.uint8))}
        if isinstance(x, torch.dtype):
            return {"torch_dtype": str(x).removeprefix("torch.")}
        if isinstance(x, dict):
            kind = "odict" if isinstance(x, OrderedDict) else "dict"
            items = []
            for k, v in x.items():
                if not (k is None or isinstance(k, (bool, int, float, str))):
                    raise NeurosimError(f"cannot store {where}: dict keys must be str, int, float, bool or None, "
                                        f"got {type(k).__name__}")
                items.append([self.node(k, where), self.node(v, f"{where}[{k!r}]")])
            return {kind: items}
        if isinstance(x, (list, tuple)):
            kind = "list" if isinstance(x, list) else "tuple"
            return {kind: [self.node(v, f"{where}[{i}]") for i, v in enumerate(x)]}
        raise NeurosimError(f"cannot store {where}: values of type {type(x).__name__} are not supported")


def encode(state) -> bytes:
    """``state`` (see the module docstring) as bytes that :func:`decode` turns back into it."""
    enc = _Encoder()
    tree = enc.node(state, "state")
    offsets, pos = [], 0
    for a in enc.arrays:
        offsets.append([pos, a.size])
        pos += -(-a.size // 8) * 8
    header = json.dumps({"tree": tree, "arrays": offsets}, separators=(",", ":")).encode()
    header += b" " * (-len(header) % 8)
    out = bytearray(len(MAGIC) + 8 + len(header) + pos)
    out[:len(MAGIC)] = MAGIC
    out[len(MAGIC):len(MAGIC) + 8] = len(header).to_bytes(8, "little")
    base = len(MAGIC) + 8 + len(header)
    out[len(MAGIC) + 8:base] = header
    view = np.frombuffer(out, np.uint8)
    for (off, size), a in zip(offsets, enc.arrays):
        view[base + off:base + off + size] = a
    return bytes(out)


class _Decoder:
    def __init__(self, data: memoryview, arrays: list, base: int):
        self.data, self.arrays, self.base = data, arrays, base

    def _raw(self, ref) -> memoryview:
        if not isinstance(ref, int) or not 0 <= ref < len(self.arrays):
            raise ValueError(f"bad array reference {ref!r}")
        off, size = self.arrays[ref]
        start = self.base + off
        if not (isinstance(off, int) and isinstance(size, int) and 0 <= off and 0 <= size
                and start + size <= len(self.data)):
            raise ValueError("array outside the data")
        return self.data[start:start + size]

    @staticmethod
    def _shape(shape) -> tuple:
        if not isinstance(shape, list) or not all(isinstance(s, int) and s >= 0 for s in shape):
            raise ValueError(f"bad shape {shape!r}")
        return tuple(shape)

    def node(self, x):
        if x is None or isinstance(x, (bool, int, str)):
            return x
        if isinstance(x, dict) and len(x) in (1, 3):
            kind = next(iter(x))
            v = x[kind]
            if kind == "float":
                return float.fromhex(v)
            if kind == "tensor":
                dtype = _TORCH_DTYPES[x["dtype"]]
                shape = self._shape(x["shape"])
                raw = self._raw(v)
                t = torch.empty(shape, dtype=dtype)
                if t.numel() * t.element_size() != len(raw):
                    raise ValueError("tensor size does not match its data")
                if t.numel():
                    t.reshape(-1).view(torch.uint8).numpy()[:] = np.frombuffer(raw, np.uint8)
                return t
            if kind in ("ndarray", "npscalar"):
                dtype = np.dtype(x["dtype"])
                if dtype.hasobject:
                    raise ValueError("object arrays are not allowed")
                shape = self._shape(x["shape"])
                a = np.frombuffer(self._raw(v), dtype=dtype).copy().reshape(shape)
                return a if kind == "ndarray" else a[()]
            if kind == "bytes":
                return bytes(self._raw(v))
            if kind == "torch_dtype":
                return _TORCH_DTYPES[v]
            if kind in ("dict", "odict"):
                items = ((self.node(k), self.node(val)) for k, val in v)
                return OrderedDict(items) if kind == "odict" else dict(items)
            if kind == "list":
                return [self.node(e) for e in v]
            if kind == "tuple":
                return tuple(self.node(e) for e in v)
        raise ValueError(f"unknown node {str(x)[:60]!r}")


def decode(data: bytes | bytearray | memoryview | np.ndarray):
    """The state that :func:`encode` turned into ``data``; malformed data raises :class:`NeurosimError`."""
    view = memoryview(np.ascontiguousarray(data, dtype=np.uint8) if isinstance(data, np.ndarray) else data).cast("B")
    if bytes(view[:len(MAGIC)]) != MAGIC:
        raise NeurosimError("not a neurosim state snapshot (bad magic bytes)")
    try:
        n = int.from_bytes(view[len(MAGIC):len(MAGIC) + 8], "little")
        base = len(MAGIC) + 8 + n
        if base > len(view):
            raise ValueError("header runs past the end")
        header = json.loads(bytes(view[len(MAGIC) + 8:base]))
        return _Decoder(view, header["arrays"], base).node(header["tree"])
    except (ValueError, KeyError, TypeError, IndexError, RuntimeError, OverflowError) as e:
        raise NeurosimError(f"state snapshot is malformed: {e}") from None


def same(a, b) -> bool:
    """Whether two states are equal, tensors and arrays bit for bit with the same dtype, floats exactly."""
    if isinstance(a, torch.Tensor):
        return (isinstance(b, torch.Tensor) and a.dtype == b.dtype and a.shape == b.shape
                and bytes(a.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy())
                == bytes(b.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy()))
    if isinstance(a, (np.ndarray, np.generic)):
        return (type(a) is type(b) and a.dtype == b.dtype and np.shape(a) == np.shape(b)
                and np.asarray(a).tobytes() == np.asarray(b).tobytes())
    if isinstance(a, float):
        return isinstance(b, float) and (a == b and math.copysign(1, a) == math.copysign(1, b)
                                         or math.isnan(a) and math.isnan(b))
    if isinstance(a, dict):
        return (type(a) is type(b) and list(a) == list(b)
                and all(same(v, b[k]) for k, v in a.items()))
    if isinstance(a, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    return type(a) is type(b) and a == b
