"""Explicit 16-lane vectors for numba kernels: the register-blocked micro-kernels of the convolutions.

LLVM's auto-vectoriser handles long contiguous loops well, but not a register tile (a dozen
accumulators of 16 lanes kept across a reduction loop): numba keeps such a tile in memory. This module
gives numba a vector type, `Vec` (16 lanes of float32 or float64, an LLVM `<16 x float>` value, held
in registers like any scalar), and a handful of intrinsics on it, so a kernel can say exactly which
tile lives in registers:

    acc = vsplat(zero)                      # 16 copies of a scalar
    acc = vfma(vload(w, k * 16), vsplat(x[p, k]), acc)
    vstore(y, p * 16, acc)

Loads and stores take a 1-D C-contiguous array and an element offset; the 16 values from there on must
lie inside the array (no bounds checks, as everywhere in nets' kernels). On a CPU without AVX-512 LLVM
splits each vector into two 8-lane halves; the results are the same.
"""
from __future__ import annotations

from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.core.errors import TypingError
from numba.extending import intrinsic, models, register_model

LANES = 16


class Vec(types.Type):
    """16 lanes of a float type, one LLVM vector value."""

    def __init__(self, dtype):
        self.dtype = dtype
        super().__init__(name=f"Vec{LANES}({dtype})")


@register_model(Vec)
class _VecModel(models.PrimitiveModel):
    def __init__(self, dmm, fe_type):
        elem = dmm.lookup(fe_type.dtype).get_value_type()
        super().__init__(dmm, fe_type, ir.VectorType(elem, LANES))


def _check_float(t, what):
    if not isinstance(t, types.Float):
        raise TypingError(f"{what}: expected float32 or float64, got {t}")


def _check_array(a, what):
    if not (isinstance(a, types.Array) and a.ndim == 1 and a.layout == "C"):
        raise TypingError(f"{what}: expected a 1-D C-contiguous array, got {a}")
    _check_float(a.dtype, what)


def _vec_ptr(context, builder, aryty, ary, idx, idxty):
    arr = context.make_array(aryty)(context, builder, value=ary)
    i = context.cast(builder, idx, idxty, types.intp)
    p = builder.gep(arr.data, [i])
    elem = context.get_value_type(aryty.dtype)
    return builder.bitcast(p, ir.VectorType(elem, LANES).as_pointer())


def _splat(builder, scalar):
    # 16 copies of an LLVM scalar: insert into lane 0, then a zero shuffle mask
    vt = ir.VectorType(scalar.type, LANES)
    v = builder.insert_element(ir.Constant(vt, ir.Undefined), scalar, ir.Constant(ir.IntType(32), 0))
    mask = ir.Constant(ir.VectorType(ir.IntType(32), LANES), [0] * LANES)
    return builder.shuffle_vector(v, ir.Constant(vt, ir.Undefined), mask)


@intrinsic
def vload(typingctx, a, i):
    """The 16 values a[i:i+16]."""
    _check_array(a, "vload")
    sig = Vec(a.dtype)(a, i)

    def codegen(context, builder, signature, args):
        p = _vec_ptr(context, builder, a, args[0], args[1], i)
        ld = builder.load(p)
        ld.align = a.dtype.bitwidth // 8
        return ld

    return sig, codegen


@intrinsic
def vstore(typingctx, a, i, v):
    """a[i:i+16] = v."""
    _check_array(a, "vstore")
    if not isinstance(v, Vec) or v.dtype != a.dtype:
        raise TypingError(f"vstore: expected a Vec of {a.dtype}, got {v}")
    sig = types.void(a, i, v)

    def codegen(context, builder, signature, args):
        p = _vec_ptr(context, builder, a, args[0], args[1], i)
        st = builder.store(args[2], p)
        st.align = a.dtype.bitwidth // 8
        return context.get_dummy_value()

    return sig, codegen


@intrinsic
def vbroadcast(typingctx, a, i):
    """16 copies of a[i] (no negative-index wraparound: i must be in range)."""
    _check_array(a, "vbroadcast")
    sig = Vec(a.dtype)(a, i)

    def codegen(context, builder, signature, args):
        arr = context.make_array(a)(context, builder, value=args[0])
        k = context.cast(builder, args[1], i, types.intp)
        ld = builder.load(builder.gep(arr.data, [k]))
        ld.align = a.dtype.bitwidth // 8
        return _splat(builder, ld)

    return sig, codegen


@intrinsic
def vsplat(typingctx, x):
    """16 copies of the float x."""
    _check_float(x, "vsplat")
    sig = Vec(x)(x)

    def codegen(context, builder, signature, args):
        return _splat(builder, args[0])

    return sig, codegen


def _binary(name, op):
    def impl(typingctx, a, b):
        if not (isinstance(a, Vec) and a == b):
            raise TypingError(f"{name}: expected two Vecs of one dtype, got {a}, {b}")
        sig = a(a, b)

        def codegen(context, builder, signature, args):
            return op(builder, args[0], args[1])

        return sig, codegen

    impl.__name__ = name
    return intrinsic(impl)


vadd = _binary("vadd", lambda b, x, y: b.fadd(x, y))
vsub = _binary("vsub", lambda b, x, y: b.fsub(x, y))
vmul = _binary("vmul", lambda b, x, y: b.fmul(x, y))
vdiv = _binary("vdiv", lambda b, x, y: b.fdiv(x, y))
# max with the first operand kept on ties and NaN in b ignored: (b > a) ? b : a
vmax = _binary("vmax", lambda b, x, y: b.select(b.fcmp_ordered(">", y, x), y, x))


@intrinsic
def vfma(typingctx, a, b, c):
    """a * b + c, one fused multiply-add per lane."""
    if not (isinstance(a, Vec) and a == b == c):
        raise TypingError(f"vfma: expected three Vecs of one dtype, got {a}, {b}, {c}")
    sig = a(a, b, c)

    def codegen(context, builder, signature, args):
        return _fma(builder, args[0], args[1], args[2])

    return sig, codegen


@intrinsic
def vselect_gt(typingctx, a, b, x, y):
    """Per lane: x if a > b else y."""
    if not (isinstance(a, Vec) and a == b == x == y):
        raise TypingError(f"vselect_gt: expected four Vecs of one dtype, got {a}, {b}, {x}, {y}")
    sig = a(a, b, x, y)

    def codegen(context, builder, signature, args):
        return builder.select(builder.fcmp_ordered(">", args[0], args[1]), args[2], args[3])

    return sig, codegen


def _pick(name, first):
    def impl(typingctx, a, b):
        if not (isinstance(a, Vec) and a == b):
            raise TypingError(f"{name}: expected two Vecs of one dtype, got {a}, {b}")
        sig = a(a, b)

        def codegen(context, builder, signature, args):
            idx = list(range(first, 2 * LANES, 2))
            return builder.shuffle_vector(args[0], args[1], ir.Constant(ir.VectorType(ir.IntType(32), LANES), idx))

        return sig, codegen

    impl.__name__ = name
    return intrinsic(impl)


# the even / odd lanes of the 32 values a, b: [a0, a2, .., a14, b0, b2, .., b14] / [a1, a3, .., b15]
vevens = _pick("vevens", 0)
vodds = _pick("vodds", 1)


@intrinsic
def vget(typingctx, v, lane):
    """Lane `lane` of v, a scalar."""
    if not isinstance(v, Vec):
        raise TypingError(f"vget: expected a Vec, got {v}")
    sig = v.dtype(v, lane)

    def codegen(context, builder, signature, args):
        i = context.cast(builder, args[1], lane, types.int32)
        return builder.extract_element(args[0], i)

    return sig, codegen


def _tree(builder, x, combine):
    # fold the 16 lanes pairwise (halves, quarters, ...) with combine(lo, hi); lane 0 of the last one
    n = LANES
    while n > 1:
        n //= 2
        lo = builder.shuffle_vector(x, x, ir.Constant(ir.VectorType(ir.IntType(32), n), list(range(n))))
        hi = builder.shuffle_vector(x, x, ir.Constant(ir.VectorType(ir.IntType(32), n), list(range(n, 2 * n))))
        x = combine(lo, hi)
    return builder.extract_element(x, ir.Constant(ir.IntType(32), 0))


@intrinsic
def vsum(typingctx, v):
    """Sum of the 16 lanes, as a fixed pairwise tree (the same order on every machine)."""
    if not isinstance(v, Vec):
        raise TypingError(f"vsum: expected a Vec, got {v}")
    sig = v.dtype(v)

    def codegen(context, builder, signature, args):
        return _tree(builder, args[0], builder.fadd)

    return sig, codegen


def _vec_intrinsic(builder, name, vt, args):
    fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(vt, [a.type for a in args]),
                                        f"llvm.{name}.v{LANES}{vt.element.intrinsic_name}")
    return builder.call(fn, args)


def _const(vt, value):
    return ir.Constant(vt, [value] * LANES)


def _fma(builder, a, b, c):
    return _vec_intrinsic(builder, "fma", a.type, [a, b, c])


def _clamp(builder, x, lo, hi):
    # compare + select (maxnum/minnum would add NaN fix-ups; callers put NaN lanes back at the end)
    x = builder.select(builder.fcmp_ordered("<", x, lo), lo, x)
    return builder.select(builder.fcmp_ordered(">", x, hi), hi, x)


@intrinsic
def vsqrt(typingctx, v):
    """Square root per lane (correctly rounded, as the scalar one)."""
    if not isinstance(v, Vec):
        raise TypingError(f"vsqrt: expected a Vec, got {v}")
    sig = v(v)

    def codegen(context, builder, signature, args):
        return _vec_intrinsic(builder, "sqrt", args[0].type, [args[0]])

    return sig, codegen


def _math_unary(name, doc, float32):
    """An intrinsic computing `name` per lane: float32 lanes through float32(builder, x) (a polynomial,
    no math library call), float64 lanes through LLVM's llvm.<name> (libm per lane)."""
    def impl(typingctx, v):
        if not isinstance(v, Vec):
            raise TypingError(f"{name}: expected a Vec, got {v}")
        sig = v(v)

        def codegen(context, builder, signature, args):
            x = args[0]
            if not isinstance(x.type.element, ir.FloatType):
                return _vec_intrinsic(builder, name[1:], x.type, [x])
            return float32(builder, x)

        return sig, codegen

    impl.__name__ = name
    impl.__doc__ = doc
    return intrinsic(impl)


def _exp_f32(builder, x):
    # Cephes' expf: range reduction by ln 2, degree-6 polynomial, 2^n through the exponent bits
    vt = x.type

    def c(val):
        return _const(vt, val)

    lo = c(-87.33654)
    xc = _clamp(builder, x, lo, c(88.37626))
    n = _vec_intrinsic(builder, "floor", vt, [_fma(builder, xc, c(1.44269504088896341), c(0.5))])
    r = _fma(builder, n, c(-0.693359375), xc)
    r = _fma(builder, n, c(2.12194440e-4), r)
    p = c(1.9875691500e-4)
    for coef in (1.3981999507e-3, 8.3334519073e-3, 4.1665795894e-2, 1.6666665459e-1, 5.0000001201e-1):
        p = _fma(builder, p, r, c(coef))
    p = _fma(builder, p, builder.fmul(r, r), builder.fadd(r, c(1.0)))
    it = ir.VectorType(ir.IntType(32), LANES)
    e = builder.shl(builder.add(builder.fptosi(n, it), ir.Constant(it, [127] * LANES)),
                    ir.Constant(it, [23] * LANES))
    y = builder.fmul(p, builder.bitcast(e, vt))
    # below the clamp exp underflows: 0; NaN stays NaN
    y = builder.select(builder.fcmp_ordered("<", x, lo), c(0.0), y)
    return builder.select(builder.fcmp_unordered("uno", x, x), x, y)


def _tanh_f32(builder, x):
    # Eigen's generic_fast_tanh_float: a rational function of degree 13 / 6 on inputs clamped to
    # +-7.9053; x itself below 4e-4 in magnitude
    vt = x.type

    def c(val):
        return _const(vt, val)

    xc = _clamp(builder, x, c(-7.90531110763549805), c(7.90531110763549805))
    x2 = builder.fmul(xc, xc)
    p = c(-2.76076847742355e-16)
    for coef in (2.00018790482477e-13, -8.60467152213735e-11, 5.12229709037114e-08,
                 1.48572235717979e-05, 6.37261928875436e-04, 4.89352455891786e-03):
        p = _fma(builder, p, x2, c(coef))
    p = builder.fmul(p, xc)
    q = c(1.19825839466702e-06)
    for coef in (1.18534705686654e-04, 2.26843463243900e-03, 4.89352518554385e-03):
        q = _fma(builder, q, x2, c(coef))
    y = builder.fdiv(p, q)
    ax = _vec_intrinsic(builder, "fabs", vt, [x])
    # tiny inputs: tanh(x) = x to float precision; NaN stays NaN (the compare is false)
    return builder.select(builder.fcmp_ordered("<", ax, c(0.0004)), x, y)


vexp = _math_unary("vexp", "exp per lane: float32 within 2 ulp, 0 below -87.3, NaN kept; float64 libm.",
                   _exp_f32)
vtanh = _math_unary("vtanh", "tanh per lane: float32 within a few ulp, NaN kept; float64 libm.", _tanh_f32)


@intrinsic
def vhmax(typingctx, v):
    """Largest of the 16 lanes."""
    if not isinstance(v, Vec):
        raise TypingError(f"vhmax: expected a Vec, got {v}")
    sig = v.dtype(v)

    def codegen(context, builder, signature, args):
        return _tree(builder, args[0], lambda lo, hi: builder.select(builder.fcmp_ordered(">", hi, lo), hi, lo))

    return sig, codegen


__all__ = ["LANES", "Vec", "vload", "vstore", "vbroadcast", "vsplat", "vadd", "vsub", "vmul", "vdiv", "vmax", "vfma",
           "vselect_gt", "vevens", "vodds", "vget", "vsum", "vsqrt", "vexp", "vtanh", "vhmax"]
