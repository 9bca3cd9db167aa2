"""Sequentially consistent atomic operations on the entries of a one-dimensional int64 array, for
compiled code whose threads share it (numba intrinsics: each lowers to one LLVM atomic instruction).

- :func:`fetch_add` ``(a, i, v)``: ``a[i] += v``, returning the value before;
- :func:`load` ``(a, i)`` and :func:`store` ``(a, i, v)``: ``a[i]`` read or written as a whole,
  never cached in a register (a loop that waits for another thread's store sees it);
- :func:`compare_exchange` ``(a, i, expected, new)``: ``a[i] = new`` if ``a[i] == expected``,
  returning whether it did.

No index is checked: the caller passes indices inside the array.
"""
from __future__ import annotations

from numba.core import cgutils, types
from numba.extending import intrinsic

_ORDER = "seq_cst"


def _pointer(context, builder, aryty, ary, index):
    array = context.make_array(aryty)(context, builder, ary)
    return cgutils.get_item_pointer(context, builder, aryty, array, [index])


def _int64(context, builder, value, ty):
    return context.cast(builder, value, ty, types.int64)


@intrinsic
def fetch_add(typingctx, a, i, v):
    def codegen(context, builder, sig, args):
        ptr = _pointer(context, builder, sig.args[0], args[0], args[1])
        return builder.atomic_rmw("add", ptr, _int64(context, builder, args[2], sig.args[2]), _ORDER)
    return types.int64(a, i, v), codegen


@intrinsic
def load(typingctx, a, i):
    def codegen(context, builder, sig, args):
        return builder.load_atomic(_pointer(context, builder, sig.args[0], args[0], args[1]), _ORDER, 8)
    return types.int64(a, i), codegen


@intrinsic
def store(typingctx, a, i, v):
    def codegen(context, builder, sig, args):
        ptr = _pointer(context, builder, sig.args[0], args[0], args[1])
        builder.store_atomic(_int64(context, builder, args[2], sig.args[2]), ptr, _ORDER, 8)
        return context.get_dummy_value()
    return types.none(a, i, v), codegen


@intrinsic
def compare_exchange(typingctx, a, i, expected, new):
    def codegen(context, builder, sig, args):
        ptr = _pointer(context, builder, sig.args[0], args[0], args[1])
        pair = builder.cmpxchg(ptr, _int64(context, builder, args[2], sig.args[2]),
                               _int64(context, builder, args[3], sig.args[3]), _ORDER, _ORDER)
        return builder.extract_value(pair, 1)
    return types.boolean(a, i, expected, new), codegen
