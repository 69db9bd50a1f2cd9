"""Compiled explanation: the trees as C code that scores *and* explains a feature block.

lleaves compiles trees for the raw score only; the reasons need every split's change of expected
value credited to its feature (path attribution, see :mod:`scoring.explain`). Walking node arrays
for that runs at a fraction of compiled-tree speed, so each tree becomes a nest of ``if``s with its
thresholds and value changes as constants, built by the system C compiler once per model version
and cached next to lleaves' library. The arithmetic is the walker's, in the same order and
without fast-math, so both give identical scores and reasons (a test holds them to it). Splits
compare the float32 input with a float32 threshold chosen to decide every input exactly as the
double comparison does (:func:`_float_threshold`), which saves widening each value.
"""

from __future__ import annotations

import ctypes
import hashlib
import logging
import os
import shutil
import subprocess
import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from scoring.explain import FlatTrees

if TYPE_CHECKING:
    import lightgbm as lgb

log = logging.getLogger(__name__)
# Bump when the generated code or its flags change: the cache key includes it.
CODEGEN_VERSION = 4
# -O3 walks the trees 9% faster than -O2 (1.72 -> 1.56 us per row, the same scores and reasons
# bit for bit) for a second more of compiling, once per model version. Never fast-math: the
# sums must be LightGBM's, in its order.
_CFLAGS = ["-O3", "-fPIC", "-shared", "-ffp-contract=off", "-fno-fast-math"]
# Trees walked over a whole chunk of rows before the next ones, each block one function that
# calls its trees directly so the compiler inlines them. Measured on 200 trees of 31 leaves,
# double comparisons (rows/s per core): 8 -> 829k, 16 -> 991k, 32 -> 1,011k, 50 -> 1,042k,
# 100 -> 914k, 200 (row by row) -> 785k; through a table of tree pointers (not inlined),
# 32 -> 681k.
TREE_BLOCK = 32
# Below this many rows one thread does the work: a hand-off costs more than it saves.
_PARALLEL_FROM = 20_000

_HEADER = """#include <math.h>
#include <stdint.h>
#define NF {n_feat}
#define NB {n_block}
#define CH 64
"""

_BLOCK = """
static void block_{first}(const float *buf, double *accs, double *raws, int64_t m) {{
    for (int64_t j = 0; j < m; j++) {{
        const float *col = buf + j * NB;
        double *acc = accs + j * NF;
        double raw = raws[j];
{calls}
        raws[j] = raw;
    }}
}}
"""

_DRIVER = """
void score_rows(const float *block, int64_t ld, int64_t lo, int64_t hi, double a, double b,
                const double *cut, int64_t k, double *proba, int32_t *top) {{
    /* Rows are copied CH at a time into a row-major buffer that stays in L1: a tree walk then
       reads one short contiguous row instead of NB cache lines (and pages) far apart. The
       trees are walked a block at a time over the whole chunk (faster than row by row,
       measured); each row still sums its trees in order, as LightGBM does. */
    static __thread float buf[CH * NB];
    static __thread double accs[CH * NF];
    double raws[CH];
    for (int64_t i0 = lo; i0 < hi; i0 += CH) {{
    int64_t m = hi - i0 < CH ? hi - i0 : CH;
    for (int64_t r = 0; r < NB; r++) {{
        const float *src = block + r * ld + i0;
        for (int64_t j = 0; j < m; j++) buf[j * NB + r] = src[j];
    }}
    for (int64_t j = 0; j < m * NF; j++) accs[j] = 0.0;
    for (int64_t j = 0; j < m; j++) raws[j] = 0.0;
{blocks}
    for (int64_t i = i0; i < i0 + m; i++) {{
        double *acc = accs + (i - i0) * NF;
        double p = 1.0 / (1.0 + exp(-(a * raws[i - i0] + b)));
        proba[i] = p;
        double s = p >= cut[i] ? 1.0 : -1.0;
        for (int64_t m = 0; m < k; m++) {{
            int best = -1;
            double best_v = 0.0;
            for (int f = 0; f < NF; f++) {{
                double v = acc[f] * s;
                if (v > best_v) {{ best_v = v; best = f; }}
            }}
            top[i * k + m] = best;
            if (best < 0) {{ for (int64_t r = m + 1; r < k; r++) top[i * k + r] = -1; break; }}
            acc[best] = 0.0;
        }}
    }}
    }}
}}
"""


def compile_trees(booster: lgb.Booster, cache_dir: Path, name: str, what: str) -> Any | None:
    """``booster``'s trees compiled by lleaves for raw scores, cached as ``name``.so under
    ``cache_dir`` (``name`` carries the model's content id). None without a compiler: the
    caller predicts with LightGBM, same answers, slower."""
    try:
        # Imported only to compile: lleaves and llvmlite stay out of uncompiled loads.
        import lleaves

        cache_dir.mkdir(parents=True, exist_ok=True)
        model_txt = cache_dir / f"{name}.txt"
        booster.save_model(str(model_txt))
        compiled = lleaves.Model(model_file=str(model_txt))
        compiled.compile(cache=str(cache_dir / f"{name}.so"), raw_score=True)
        return compiled
    except Exception as exc:  # a missing compiler must not stop scoring
        log.warning("compiled %s unavailable (%s); using LightGBM predict", what, exc)
        return None


def _float_threshold(threshold: float) -> str:
    """The largest float32 at most ``threshold``, as a C literal.

    For every float32 ``v``, ``(double)v <= threshold`` (LightGBM's comparison) holds exactly
    when ``v`` is at most this float: no float lies between the two.
    """
    with np.errstate(over="ignore"):
        f = np.float32(threshold)
    if float(f) > threshold:
        f = np.nextafter(f, np.float32(-np.inf), dtype=np.float32)
    if np.isinf(f):
        return "-INFINITY" if f < 0 else "INFINITY"
    return float(f).hex() + "f"


def _condition(trees: FlatTrees, node: int, row: int) -> str:
    """C expression that is true when a row goes left at ``node``."""
    thr = _float_threshold(float(trees.threshold[node]))
    v = f"col[{row}]"
    if trees.missing[node] == 1:  # zero and NaN are "missing": the default side
        side = "1" if trees.default_left[node] else "0"
        return f"((isnan({v}) || {v} == 0.0f) ? {side} : ({v} <= {thr}))"
    # Missing type NaN: the default side; None: LightGBM reads NaN as 0.0.
    if trees.missing[node] == 2:
        nan_left = bool(trees.default_left[node])
    else:
        nan_left = bool(trees.threshold[node] >= 0.0)
    # v <= thr is false for NaN, so only a NaN that goes left needs its own test.
    return f"(!({v} > {thr}))" if nan_left else f"({v} <= {thr})"


def _tree_source(trees: FlatTrees, t: int, fmap: np.ndarray) -> str:
    value = trees.value
    lines = [f"static double tree_{t}(const float *col, double *acc) {{"]

    def emit(node: int, depth: int) -> None:
        pad = "    " * depth
        if node < 0:
            lines.append(f"{pad}return {float(value[~node]).hex()};")
            return
        f = int(trees.feature[node])
        left, right = int(trees.left[node]), int(trees.right[node])
        d_left = float(value[left if left >= 0 else ~left] - value[node]).hex()
        d_right = float(value[right if right >= 0 else ~right] - value[node]).hex()
        cond = _condition(trees, node, int(fmap[f]))
        if left < 0 and right < 0:
            # Both children leaves: selects instead of a branch (no misprediction to pay).
            leaf_l, leaf_r = float(value[~left]).hex(), float(value[~right]).hex()
            lines.append(f"{pad}{{ const int c = {cond};")
            lines.append(f"{pad}  acc[{f}] += c ? {d_left} : {d_right};")
            lines.append(f"{pad}  return c ? {leaf_l} : {leaf_r}; }}")
            return
        lines.append(f"{pad}if {cond} {{")
        lines.append(f"{pad}    acc[{f}] += {d_left};")
        emit(left, depth + 1)
        lines.append(f"{pad}}} else {{")
        lines.append(f"{pad}    acc[{f}] += {d_right};")
        emit(right, depth + 1)
        lines.append(f"{pad}}}")

    emit(int(trees.roots[t]), 1)
    lines.append("}")
    return "\n".join(lines)


def c_source(trees: FlatTrees, fmap: np.ndarray, n_block: int) -> str:
    """The C translation unit for these trees reading a block of ``n_block`` rows laid out by
    ``fmap`` (model feature ``f`` is block row ``fmap[f]``)."""
    n_trees = len(trees.roots)
    parts = [_HEADER.format(n_feat=len(fmap), n_block=n_block)]
    parts += [_tree_source(trees, t, fmap) for t in range(n_trees)]
    firsts = range(0, n_trees, TREE_BLOCK)
    for first in firsts:
        calls = [
            f"        raw += tree_{t}(col, acc);"
            for t in range(first, min(first + TREE_BLOCK, n_trees))
        ]
        parts.append(_BLOCK.format(first=first, calls="\n".join(calls)))
    blocks = "\n".join(f"    block_{first}(buf, accs, raws, m);" for first in firsts)
    parts.append(_DRIVER.format(blocks=blocks))
    return "\n\n".join(parts)


class CompiledExplainer:
    """Scores and top-k reasons of a float32 (features x rows) block, from a compiled library."""

    def __init__(self, library: Path, n_block: int) -> None:
        self.n_block = n_block
        self._lib = ctypes.CDLL(str(library))
        fn = self._lib.score_rows
        fn.restype = None
        fn.argtypes = [
            ctypes.c_void_p,
            ctypes.c_int64,
            ctypes.c_int64,
            ctypes.c_int64,
            ctypes.c_double,
            ctypes.c_double,
            ctypes.c_void_p,
            ctypes.c_int64,
            ctypes.c_void_p,
            ctypes.c_void_p,
        ]
        self._fn = fn
        self._pool: ThreadPoolExecutor | None = None
        self._pool_size = 0
        self._lock = threading.Lock()

    def __call__(
        self,
        block: np.ndarray,
        calibration: tuple[float, float],
        cut: np.ndarray,
        k: int = 3,
        threads: int = 1,
    ) -> tuple[np.ndarray, np.ndarray]:
        """(calibrated probability, top-k model feature indices) per column, as the walker."""
        block = np.ascontiguousarray(block, dtype=np.float32)
        if block.shape[0] != self.n_block:
            raise ValueError(f"block has {block.shape[0]} rows, compiled for {self.n_block}")
        n = block.shape[1]
        cut = np.ascontiguousarray(cut, dtype=np.float64)
        proba = np.empty(n, dtype=np.float64)
        top = np.full((n, k), -1, dtype=np.int32)
        a, b = calibration

        def run(lo: int, hi: int) -> None:  # ctypes releases the GIL for the call
            self._fn(
                block.ctypes.data,
                n,
                lo,
                hi,
                a,
                b,
                cut.ctypes.data,
                k,
                proba.ctypes.data,
                top.ctypes.data,
            )

        if threads <= 1 or n < _PARALLEL_FROM:
            run(0, n)
        else:
            bounds = np.linspace(0, n, threads + 1).astype(int)
            futures = [
                self._executor(threads).submit(run, int(lo), int(hi))
                for lo, hi in zip(bounds[:-1], bounds[1:], strict=True)
            ]
            for future in futures:
                future.result()
        return proba, top

    def _executor(self, threads: int) -> ThreadPoolExecutor:
        with self._lock:
            if self._pool is None or self._pool_size < threads:
                self._pool = ThreadPoolExecutor(threads, thread_name_prefix="explain")
                self._pool_size = threads
            return self._pool


def compile_explainer(
    trees: FlatTrees, fmap: np.ndarray, n_block: int, cache_dir: Path
) -> CompiledExplainer | None:
    """Build (or reuse from ``cache_dir``) the library for these trees reading blocks of
    ``n_block`` rows; None without a compiler."""
    compiler = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        log.warning("no C compiler: reasons use the tree walker")
        return None
    source = c_source(trees, fmap, n_block)
    digest = hashlib.sha256(f"{CODEGEN_VERSION}\n{source}".encode()).hexdigest()[:16]
    library = cache_dir / f"explain-{digest}.so"
    if not library.exists():
        cache_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=cache_dir) as tmp:
            src = Path(tmp) / "explain.c"
            src.write_text(source)
            out = Path(tmp) / "explain.so"
            done = subprocess.run(
                [compiler, *_CFLAGS, "-o", str(out), str(src), "-lm"],
                capture_output=True,
                text=True,
                check=False,
            )
            if done.returncode != 0:
                log.warning("compiling the explainer failed: %s", done.stderr.strip()[-500:])
                return None
            os.replace(out, library)  # atomic: concurrent workers never load a partial file
    return CompiledExplainer(library, n_block)
