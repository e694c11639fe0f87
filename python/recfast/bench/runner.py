"""Side-by-side top-k benchmark: `python -m recfast.bench` (also `recfast bench`).

Protocol (docs/benchmarks.md): N normalized float32 items and B queries (seed 0, standard normal
rows), k best by inner product. recfast and every installed peer (the NumPy reference, FAISS
IndexFlatIP, torch, implicit) run on the same data, each in its own process (started with
`python -m recfast.bench.worker`, which builds the data from the seed), each at its best
settings and with all CPUs. Per shape and library: best of R timed calls after a warm-up
(1 timed call when the warm-up took longer than --slow-seconds), GFLOP/s = 2*B*N*d / t, time
relative to recfast, and the extra peak RSS beyond inputs and outputs. Every row, recfast's
own included, is checked against the float64 answer (`recfast.bench.check`: computed once per
dimension in its own worker; ids in order, near-ties in either order); a wrong row is named
loudly and the exit status is 1.

The results go to OUT/topk.json, and with --save-json PATH to PATH as well (a folder gets
<date>-<machine>.json: bench/results/ keeps the runs the README quotes). --markdown JSON prints
the README's table from such a file, and refuses a run in which any row failed its check.

Shapes: by default the targets of issue 2 (d=128: B in 1, 16, 128, 1024 with k=10, and
B=1024 with k=100; d=64: B=1024, k=10); --full the whole matrix (d in 64, 128; B in 1, 16, 128,
1024; k in 10, 100); --quick a reduced run (N=100,000, d=128, B in 1, 16, 128, 1024, k=10)
that finishes in under a minute. --dims/--batches/--ks give the product of those lists.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.metadata
import importlib.util
import itertools
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from typing import Any

from .._io import atomic_write
from . import check as _bench_check
from . import report

FULL_DIMS = (64, 128)
FULL_BATCHES = (1, 16, 128, 1024)
FULL_KS = (10, 100)
# Issue 2's target shapes: (d, B, k).
DEFAULT_SHAPES = [
    (128, 1, 10),
    (128, 16, 10),
    (128, 128, 10),
    (128, 1024, 10),
    (128, 1024, 100),
    (64, 1024, 10),
]
QUICK_SHAPES = [(128, 1, 10), (128, 16, 10), (128, 128, 10), (128, 1024, 10)]
DEFAULT_N = 1_000_000
QUICK_N = 100_000
# --small-batches: the serving micro-batches at three dimensions (N = 1M).
SMALL_BATCH_DIMS = (64, 128, 256)
SMALL_BATCHES = (1, 2, 4, 8, 16, 32, 64)
# --serving: latency of one user and of a micro-batch over a catalogue of 100k items.
SERVING_N = 100_000
SERVING_SHAPES = [(128, 1, 10), (128, 16, 10)]

PEERS = ("index", "reference", "faiss", "torch", "implicit")
# Variants: tag -> (library, variant, python module that must be importable, extra env).
VARIANTS = {
    "recfast-dot": ("recfast", "dot", "recfast", {}),
    "recfast-cosine": ("recfast", "cosine", "recfast", {}),
    "index-float32": ("index", "float32", "recfast", {}),
    "index-float16": ("index", "float16", "recfast", {}),
    "index-int8": ("index", "int8", "recfast", {}),
    "reference": ("reference", "", "numpy", {}),
    "faiss-default": ("faiss", "default", "faiss", {}),
    "faiss-blas": ("faiss", "blas", "faiss", {}),
    "faiss-shards": ("faiss", "shards", "faiss", {"OMP_NUM_THREADS": "1"}),
    "torch": ("torch", "", "torch", {}),
    "implicit": ("implicit", "", "implicit", {}),
}
PEER_TAGS = {
    "index": ["index-float32", "index-float16", "index-int8"],
    "reference": ["reference"],
    "faiss": ["faiss-default", "faiss-blas", "faiss-shards"],
    "torch": ["torch"],
    "implicit": ["implicit"],
}
# The worker that computes the float64 answer of each dimension (not a row of the tables).
TRUTH_TAG = "float64-truth"
LABEL_OF = {**report.LABELS, TRUTH_TAG: "float64 answer (the check)"}
# The IndexShards variant is FAISS's best setting for single queries only.
SHARDS_MAX_BATCH = 1
# Which OpenBLAS build each library computes with (torch uses MKL, recfast none).
OPENBLAS_OF = {"reference": "numpy", "implicit": "numpy", "faiss": "faiss"}
DISTRIBUTIONS = {
    "recfast": "recfast",
    "numpy": "numpy",
    "scipy": "scipy",
    "faiss": "faiss-cpu",
    "torch": "torch",
    "implicit": "implicit",
    "matplotlib": "matplotlib",
    "psutil": "psutil",
}
ENV_REPORTED = (
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "OPENBLAS_CORETYPE",
    "RECFAST_SIMD",
    "OMP_PROC_BIND",
    "OMP_WAIT_POLICY",
    "KMP_AFFINITY",
)

# OpenBLAS core names by the widest x86 vector extension their kernels use.
_CORE_TIER = {
    "prescott": 0,
    "core2": 0,
    "penryn": 0,
    "dunnington": 0,
    "nehalem": 0,
    "atom": 0,
    "opteron": 0,
    "opteron_sse3": 0,
    "barcelona": 0,
    "bobcat": 0,
    "katmai": 0,
    "coppermine": 0,
    "northwood": 0,
    "banias": 0,
    "athlon": 0,
    "generic": 0,
    "sandybridge": 1,
    "bulldozer": 1,
    "piledriver": 1,
    "steamroller": 1,
    "excavator": 1,
    "haswell": 2,
    "zen": 2,
    "skylakex": 3,
    "cooperlake": 3,
    "sapphirerapids": 3,
}


# --------------------------------------------------------------------------------------------
# machine


def _cpu_info() -> dict[str, Any]:
    model, flags = platform.processor() or "unknown", set[str]()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                key = key.strip()
                if key == "model name" and model in ("unknown", "", platform.processor()):
                    model = value.strip()
                elif key == "flags" and not flags:
                    flags = set(value.split())
    except OSError:
        pass
    affinity: int | None
    try:
        affinity = len(os.sched_getaffinity(0))
    except AttributeError:
        affinity = os.cpu_count()
    mem_gb = None
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    mem_gb = round(int(line.split()[1]) / 2**20, 1)
    except OSError:
        pass
    physical = None
    try:
        import psutil

        physical = psutil.cpu_count(logical=False)
    except ImportError:
        pass
    simd = [
        f
        for f in (
            "sse4_2",
            "avx",
            "avx2",
            "fma",
            "avx512f",
            "avx512bw",
            "avx512vl",
            "avx512_vnni",
            "avx512_bf16",
            "avx512_fp16",
            "amx_tile",
        )
        if f in flags
    ]
    return {
        "cpu_model": model,
        "logical_cpus": os.cpu_count(),
        "cpus_available": affinity,
        "physical_cores": physical,
        "memory_gb": mem_gb,
        "simd_flags": simd,
        "platform": platform.platform(),
        "python": sys.version.split()[0],
    }


def _expected_core(flags: list[str]) -> tuple[str | None, int]:
    vendor_amd = False
    try:
        with open("/proc/cpuinfo") as f:
            vendor_amd = "AuthenticAMD" in f.read(4096)
    except OSError:
        pass
    if "avx512f" in flags:
        return "SkylakeX", 3
    if "avx2" in flags and "fma" in flags:
        return ("Zen" if vendor_amd else "Haswell"), 2
    if "avx" in flags:
        return "SandyBridge", 1
    return None, 0


def _loadavg() -> float | None:
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):
        return None


def _versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for name, dist in DISTRIBUTIONS.items():
        try:
            out[name] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            out[name] = None
    return out


# --------------------------------------------------------------------------------------------
# processes


def _worker_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "recfast.bench.worker", *args]


def _probe(libs: list[str], env: dict[str, str]) -> dict:
    proc = subprocess.run(
        _worker_cmd("--probe", *libs), env=env, capture_output=True, text=True, timeout=300
    )
    if proc.returncode != 0:
        return {"error": proc.stderr.strip()[-2000:]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _decide_coretype(choice: str, libs: list[str], machine: dict) -> tuple[dict[str, str], dict]:
    """OPENBLAS_CORETYPE per OpenBLAS user ("numpy", "faiss") and what was probed.

    choice "auto": set it (to the CPU's real core type) only for a build that detected a core
    with narrower vectors than the CPU has (e.g. 'Prescott' on an AVX-512 machine); "none":
    never; any other value: set exactly that for every OpenBLAS user. A value already in the
    environment is left alone and reported.
    """
    info: dict[str, Any] = {"choice": choice, "inherited": os.environ.get("OPENBLAS_CORETYPE")}
    if not libs:
        return {}, info
    info["probe"] = _probe(libs, dict(os.environ))
    expected, tier = _expected_core(machine["simd_flags"])
    info["expected_core"] = expected
    if choice == "none" or info["inherited"]:
        return {}, info
    if choice != "auto":
        applied = {lib: choice for lib in libs}
    else:
        applied = {}
        for lib in libs:
            for build in info["probe"].get("libs", {}).get(lib, {}).get("builds", []):
                core = (build.get("corename") or "").lower()
                if expected and _CORE_TIER.get(core, 3) < tier:
                    applied[lib] = expected
    if applied:
        env = dict(os.environ)
        env["OPENBLAS_CORETYPE"] = next(iter(applied.values()))
        info["probe_after"] = _probe(sorted(applied), env)
    info["applied"] = applied
    return applied, info


def _run_worker(spec: dict, env: dict[str, str], timeout: float) -> dict:
    spec_path = os.path.join(spec["work_dir"], f"{spec['tag']}_d{spec['d']}.json")
    with open(spec_path, "w") as f:
        json.dump(spec, f)
    try:
        proc = subprocess.run(
            _worker_cmd(spec_path), env=env, capture_output=True, text=True, timeout=timeout
        )
    except subprocess.TimeoutExpired:
        return {"tag": spec["tag"], "error": f"worker timed out after {timeout:.0f} s"}
    result = None
    if os.path.exists(spec["result_path"]):
        with open(spec["result_path"]) as f:
            result = json.load(f)
    if result is None:
        tail = (proc.stderr or proc.stdout or "").strip()[-1500:]
        return {"tag": spec["tag"], "error": f"worker exited with status {proc.returncode}: {tail}"}
    return result


# --------------------------------------------------------------------------------------------
# command line


def _int_list(text: str) -> list[int]:
    return [int(x) for x in text.replace(",", " ").split()]


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m recfast.bench",
        description="recfast.topk side by side with the installed peers (NumPy reference, FAISS, torch, "
        "implicit), each in its own process, on the same normalized data.",
    )
    mode = p.add_mutually_exclusive_group()
    mode.add_argument(
        "--quick", action="store_true", help="reduced run, under a minute (N=100,000, d=128, k=10)"
    )
    mode.add_argument(
        "--full",
        action="store_true",
        help="whole matrix: d in 64,128; B in 1,16,128,1024; k in 10,100",
    )
    mode.add_argument(
        "--small-batches",
        action="store_true",
        help="serving micro-batches: d in 64,128,256; B in 1,2,4,8,16,32,64; k=10 (N=1,000,000)",
    )
    mode.add_argument(
        "--serving",
        action="store_true",
        help=f"serving latency: N={SERVING_N:,}, d=128, B in 1,16, k=10 (median and p99)",
    )
    p.add_argument(
        "--n-items",
        type=int,
        help=f"items N (default {DEFAULT_N:,}; --quick and --serving {QUICK_N:,})",
    )
    p.add_argument(
        "--dims",
        type=_int_list,
        help="dimensions, e.g. '64,128' (with --batches/--ks: their product)",
    )
    p.add_argument("--batches", type=_int_list, help="queries per call B, e.g. '1,16,128,1024'")
    p.add_argument("--ks", type=_int_list, help="k values, e.g. '10,100'")
    p.add_argument(
        "--repeats",
        type=int,
        default=3,
        help="timed calls per shape after the warm-up at least; calls under 1 s are repeated up to "
        "30 times or 1 s in all; the median and p99 are reported (3)",
    )
    p.add_argument(
        "--slow-seconds",
        type=float,
        default=5.0,
        help="a warm-up longer than this is followed by 1 timed call instead of --repeats (5)",
    )
    p.add_argument(
        "--peers",
        default=None,
        help=f"comma list from {','.join(PEERS)} or 'none' (default: every installed one)",
    )
    p.add_argument("--no-cosine", action="store_true", help="skip the recfast metric='cosine' row")
    p.add_argument(
        "--simd", choices=("generic", "avx2", "avx512"), help="force recfast's instruction set"
    )
    p.add_argument(
        "--openblas-coretype",
        default=os.environ.get("RECFAST_BENCH_OPENBLAS_CORETYPE", "auto"),
        help="OPENBLAS_CORETYPE for peers using OpenBLAS: 'auto' (only when misdetected), 'none', or a name",
    )
    p.add_argument("--seed", type=int, default=0, help="data seed (0)")
    p.add_argument(
        "--tol",
        type=float,
        default=None,
        help="relative tolerance of the float64 check, times |q| * max|x| (default 2*d*2^-24, twice "
        "the worst-case float32 rounding error of a d-term dot product: 1.5e-5 at d=128)",
    )
    p.add_argument(
        "--out", default="bench_results", help="folder for topk.json and topk.png (bench_results)"
    )
    p.add_argument(
        "--save-json",
        metavar="PATH",
        help="also write the results to PATH; a folder (e.g. bench/results/) gets <date>-<machine>.json",
    )
    p.add_argument(
        "--markdown",
        metavar="JSON",
        help="print the README's table from a saved run (e.g. bench/results/<file>.json) and exit",
    )
    p.add_argument("--no-plot", action="store_true", help="do not write topk.png")
    p.add_argument(
        "--worker-timeout", type=float, default=3600.0, help="seconds allowed per worker process"
    )
    return p


def _shapes(args: argparse.Namespace) -> list[tuple[int, int, int]]:
    if args.dims or args.batches or args.ks:
        dims = args.dims or ([128] if args.quick else list(FULL_DIMS if args.full else (128,)))
        batches = args.batches or list(FULL_BATCHES)
        ks = args.ks or ([10] if not args.full else list(FULL_KS))
        return [
            (d, b, k)
            for d, k, b in itertools.product(
                sorted(set(dims), reverse=True), sorted(set(ks)), sorted(set(batches))
            )
        ]
    if args.full:
        return [
            (d, b, k)
            for d, k, b in itertools.product(sorted(FULL_DIMS, reverse=True), FULL_KS, FULL_BATCHES)
        ]
    if args.small_batches:
        return [(d, b, 10) for d in sorted(SMALL_BATCH_DIMS, reverse=True) for b in SMALL_BATCHES]
    if args.serving:
        return list(SERVING_SHAPES)
    return list(QUICK_SHAPES if args.quick else DEFAULT_SHAPES)


def _write_json(path: str, data: dict) -> None:
    text = json.dumps(data, indent=1).encode("utf-8")
    atomic_write(path, lambda f: f.write(text))


def _save_json_path(target: str, data: dict) -> str:
    """The file --save-json writes: target itself, or <date>-<machine>.json inside a folder."""
    if target.endswith(("/", os.sep)) or os.path.isdir(target):
        name = f"{str(data['created'])[:10]}-{report.machine_slug(data['machine'])}.json"
        return os.path.join(target, name)
    return target


def _markdown(path: str) -> int:
    try:
        with open(path) as f:
            data = json.load(f)
    except OSError as exc:
        print(f"error: --markdown {path}: cannot read it ({exc.strerror or exc})", file=sys.stderr)
        return 2
    except json.JSONDecodeError as exc:
        print(f"error: --markdown {path}: not JSON (line {exc.lineno}: {exc.msg})", file=sys.stderr)
        return 2
    try:
        print(report.markdown_table(data, source=path))
    except (ValueError, KeyError, TypeError) as exc:
        msg = (
            str(exc)
            if isinstance(exc, ValueError)
            else f"unexpected content ({type(exc).__name__}: {exc})"
        )
        print(f"error: --markdown {path}: {msg}", file=sys.stderr)
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.markdown:
        return _markdown(args.markdown)
    n = args.n_items or (QUICK_N if args.quick else SERVING_N if args.serving else DEFAULT_N)
    shapes = _shapes(args)
    bad = [s for s in shapes if min(s) < 1]
    if n < 1 or bad or args.repeats < 1:
        print("error: N, dims, batches, ks and --repeats must be positive", file=sys.stderr)
        return 2
    if args.tol is not None and not args.tol >= 0:
        print(f"error: --tol: expected a number >= 0, got {args.tol}", file=sys.stderr)
        return 2
    if args.save_json:
        target = args.save_json
        folder = (
            target if target.endswith(("/", os.sep)) else os.path.dirname(os.path.abspath(target))
        )
        if (
            not os.path.isdir(target)
            and not target.endswith(("/", os.sep))
            and not os.path.isdir(folder)
        ):
            print(
                f"error: --save-json {target}: the folder {folder} does not exist "
                "(end the path with / to have a folder created)",
                file=sys.stderr,
            )
            return 2
    installed = {
        p for p in PEERS if importlib.util.find_spec(VARIANTS[PEER_TAGS[p][0]][2]) is not None
    }
    if args.peers is None:
        peers = [p for p in PEERS if p in installed]
    elif args.peers.strip().lower() == "none":
        peers = []
    else:
        peers = [p.strip() for p in args.peers.split(",") if p.strip()]
        unknown = [p for p in peers if p not in PEERS]
        missing = [p for p in peers if p in PEERS and p not in installed]
        if unknown or missing:
            print(
                f"error: --peers: unknown {unknown} / not installed {missing}; choose from {list(PEERS)}",
                file=sys.stderr,
            )
            return 2
    skipped = [p for p in PEERS if p not in installed]
    tags = ["recfast-dot"] + ([] if args.no_cosine else ["recfast-cosine"])
    tags += [t for p in peers for t in PEER_TAGS[p]]

    machine = _cpu_info()
    versions = _versions()
    import recfast
    from recfast import _native

    machine["recfast_simd_level"] = recfast.simd_level()
    # The machine's own rates, measured before any worker starts (a fraction of a second).
    machine["floors"] = _native.hw_floors(256, machine["cpus_available"] or 1)
    levels = ["generic", "avx2", "avx512"]
    detected = _native.detected_simd_level()
    if args.simd and detected in levels and levels.index(args.simd) > levels.index(detected):
        print(
            f"error: --simd {args.simd}: recfast can use at most {detected} here", file=sys.stderr
        )
        return 2
    blas_users = sorted({OPENBLAS_OF[p] for p in peers if p in OPENBLAS_OF})
    coretype, blas_info = _decide_coretype(args.openblas_coretype, blas_users, machine)

    n_queries = max(b for _, b, _ in shapes)
    print(
        f"recfast bench: N={n:,}, {len(shapes)} shapes, repeats={args.repeats}, libraries: {', '.join(tags)}"
    )
    print(
        f"machine: {machine['cpu_model']}, {machine['cpus_available']} CPUs, simd {' '.join(machine['simd_flags'])}, "
        f"recfast simd_level={recfast.simd_level()}"
        + (f" (forced {args.simd})" if args.simd else "")
    )
    print(report.floors_text(machine["floors"]))
    if skipped:
        print(f"peers not installed (skipped): {', '.join(skipped)}")
    for lib, builds in blas_info.get("probe", {}).get("libs", {}).items():
        cores = ", ".join(str(b.get("corename")) for b in builds.get("builds", []))
        after = blas_info.get("probe_after", {}).get("libs", {}).get(lib, {}).get("builds", [])
        after_txt = ", ".join(str(b.get("corename")) for b in after) or "?"
        print(
            f"OpenBLAS of {lib}: detected core {cores or '?'}"
            + (
                f" -> OPENBLAS_CORETYPE={coretype[lib]} set for its workers (then detects {after_txt})"
                if lib in coretype
                else ""
            )
        )
    if blas_info.get("inherited"):
        print(f"OPENBLAS_CORETYPE={blas_info['inherited']} inherited from the environment")

    load_start = _loadavg()
    if load_start is not None and load_start > 0.5 * (machine["cpus_available"] or 1):
        print(
            f"warning: load average {load_start:.1f} on {machine['cpus_available']} CPUs before starting: other "
            "processes are running, so times are inflated and noisy; compare ratios from one run."
        )
    work_dir = tempfile.mkdtemp(prefix="recfast-bench-")
    worker_env: dict[str, dict[str, str]] = {}
    results: list[dict] = []
    started = time.perf_counter()
    jobs = []
    for d in sorted({s[0] for s in shapes}, reverse=True):
        jobs.append((d, TRUTH_TAG, [(n_queries, max(k for dd, _, k in shapes if dd == d))]))
        for tag in tags:
            sub = [(b, k) for dd, b, k in shapes if dd == d]
            if tag == "faiss-shards":
                sub = [(b, k) for b, k in sub if b <= SHARDS_MAX_BATCH]
            if sub:
                jobs.append((d, tag, sub))
    try:
        for i, (d, tag, sub) in enumerate(jobs, 1):
            library, variant, _, extra_env = (
                VARIANTS[tag] if tag != TRUTH_TAG else ("truth", "", "numpy", {})
            )
            env = dict(os.environ)
            env.update(extra_env)
            blas_user = "numpy" if library == "truth" else OPENBLAS_OF.get(library)
            if blas_user in coretype:
                env["OPENBLAS_CORETYPE"] = coretype[blas_user]
            if library in ("recfast", "index") and args.simd:
                env["RECFAST_SIMD"] = args.simd
            worker_env[tag] = {k: env[k] for k in ENV_REPORTED if k in env}
            spec = {
                "tag": tag,
                "library": library,
                "variant": variant,
                "n": n,
                "d": d,
                "n_queries": n_queries,
                "seed": args.seed,
                "shapes": sub,
                "repeats": args.repeats,
                "slow_seconds": args.slow_seconds,
                "simd": args.simd,
                "work_dir": work_dir,
                "result_path": os.path.join(work_dir, f"{tag}_d{d}.result.json"),
            }
            if tag == TRUTH_TAG:
                spec.update(
                    k=sub[0][1], tol=args.tol, truth_path=os.path.join(work_dir, f"truth_d{d}.npz")
                )
                what = f"B={n_queries} k={sub[0][1]}"
            else:
                what = f"{len(sub)} shape(s)"
            print(
                f"[{i}/{len(jobs)}] {LABEL_OF.get(tag, tag):<27} d={d:<4} {what} ...",
                end=" ",
                flush=True,
            )
            t0 = time.perf_counter()
            res = _run_worker(spec, env, args.worker_timeout)
            res.setdefault("d", d)
            res["worker_wall_s"] = time.perf_counter() - t0
            results.append(res)
            status = (
                "ERROR"
                if "error" in res
                else "failed shapes"
                if any("error" in s for s in res["shapes"])
                else "done"
            )
            print(f"{status} in {time.perf_counter() - t0:.1f} s", flush=True)
            if "error" in res:
                print("    " + res["error"].strip().replace("\n", "\n    ")[-1500:], flush=True)
        table, rows, errors, truth_info = _collect(results, n, machine.get("floors"))
    finally:
        shutil.rmtree(work_dir, ignore_errors=True)
    elapsed = time.perf_counter() - started
    load_end = _loadavg()

    print()
    for s in shapes:
        print(report.shape_table(n, *s, table.get(s, {})))
        print()
    print(report.summary_table(n, shapes, table))
    data_methods = sorted({r["memory_method"] for r in results if r.get("memory_method")})
    wrong = [r for r in rows if r["tag"] != "faiss-best" and report.failed(r.get("check"))]
    print()
    print(
        f"extra MB: peak RSS during the calls minus RSS after the data (and index) were built, minus the outputs "
        f"({', '.join(data_methods) or '?'})."
    )
    print(report.index_candidates(results))
    recfast_info: dict[str, Any] = next(
        (r.get("info", {}) for r in results if r.get("library") == "recfast" and "info" in r), {}
    )
    if recfast_info:
        print(
            f"recfast simd_level in its worker: {recfast_info.get('simd_level')} "
            f"(this machine: {machine['recfast_simd_level']})"
        )

    os.makedirs(args.out, exist_ok=True)
    data = {
        "schema": 2,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "argv": sys.argv[1:] if argv is None else list(argv),
        "elapsed_s": elapsed,
        "machine": machine,
        "recfast": recfast_info,
        "versions": versions,
        "load_average_1min": {"start": load_start, "end": load_end},
        "worker_wall_s": {
            f"{r.get('tag')} d={r.get('d')}": r.get("worker_wall_s") for r in results
        },
        "config": {
            "n_items": n,
            "shapes_dBk": shapes,
            "repeats": args.repeats,
            "slow_seconds": args.slow_seconds,
            "seed": args.seed,
            "tol": args.tol if args.tol is not None else "2*d*2^-24 (default)",
            "simd": args.simd,
            "peers": peers,
            "peers_not_installed": skipped,
            "faiss_shards_max_batch": SHARDS_MAX_BATCH,
            "data": "standard normal rows scaled to unit norm, float32",
        },
        "env": {
            "inherited": {k: os.environ[k] for k in ENV_REPORTED if k in os.environ},
            "per_worker": worker_env,
        },
        "openblas": blas_info,
        "libraries": {r["tag"]: r.get("info", {}) for r in results if "tag" in r},
        "memory_method": data_methods,
        "check": {
            "against": "float64 top-k (recfast.bench.check.exact_topk), per dimension",
            "truth": truth_info,
        },
        "results": rows,
        "errors": errors,
        "mismatches": len(wrong),
    }
    json_path = os.path.join(args.out, "topk.json")
    _write_json(json_path, data)
    print(f"\nwrote {json_path}", end="")
    if args.save_json:
        saved = _save_json_path(args.save_json, data)
        os.makedirs(os.path.dirname(os.path.abspath(saved)), exist_ok=True)
        _write_json(saved, data)
        print(f", {saved}", end="")
    if not args.no_plot:
        png = report.plot(os.path.join(args.out, "topk.png"), n, shapes, table)
        print(f", {png}" if png else " (matplotlib not installed: no plot)", end="")
    print(f"; total {elapsed:.0f} s")
    if wrong:
        print(
            f"\n!!! {len(wrong)} row(s) fail the float64 check (wrong ids, order or scores beyond near-ties):"
        )
        for r in wrong:
            c = r["check"]
            print(
                f"!!! {r['label']} at d={r['d']} B={r['B']} k={r['k']}: {c['bad']}/{c['rows']} query rows wrong"
            )
            for p in c["problems"]:
                print(f"      {p}")
        return 1
    if errors:
        print(f"\n!!! {len(errors)} worker/shape error(s): " + "; ".join(e["what"] for e in errors))
        return 2
    return 0


def _collect(
    results: list[dict], n: int, floors: dict | None = None
) -> tuple[dict, list[dict], list[dict], dict]:
    """(table[(d, B, k)][tag] -> row, flat list of rows, errors, truth info per d), every row
    checked against the float64 answer of its dimension and given its hardware floor (from the
    measured `floors`), plus the derived FAISS best row."""
    table: dict[tuple[int, int, int], dict[str, dict]] = {}
    errors: list[dict] = []
    truths: dict[int, _bench_check.Truth] = {}
    truth_info: dict[str, dict] = {}
    for res in results:
        if res.get("library") == "truth" and "error" not in res:
            truths[res["d"]] = _bench_check.Truth.load(res["truth_npz"])
            truth_info[f"d={res['d']}"] = {k: res[k] for k in ("k", "seconds", "rounds", "tol")}
    for res in results:
        if "error" in res:
            what = "float64 answer" if res.get("tag") == TRUTH_TAG else res.get("tag")
            errors.append({"what": f"{what} d={res.get('d')}", "error": res["error"]})
            continue
        for s in res["shapes"]:
            key = (res["d"], s["B"], s["k"])
            row = {
                "tag": res["tag"],
                "library": res["library"],
                "variant": res["variant"],
                "label": report.LABELS[res["tag"]],
                "n": n,
                "d": res["d"],
                "B": s["B"],
                "k": s["k"],
            }
            if "error" in s:
                row["error"] = s["error"]
                errors.append(
                    {
                        "what": f"{res['tag']} d={res['d']} B={s['B']} k={s['k']}",
                        "error": s["traceback"],
                    }
                )
            else:
                row.update(
                    {
                        "best_s": s["best_s"],
                        "median_s": s["median_s"],
                        "p99_s": s["p99_s"],
                        "ms": s["median_s"] * 1e3,
                        "floor_s": report.floor_seconds(res["tag"], n, res["d"], s["B"], floors),
                        "times_ms": [t * 1e3 for t in s["times_s"]],
                        "warmup_ms": s["warmup_s"] * 1e3,
                        "repeats": s["repeats"],
                        "gflops": report.gflops(n, res["d"], s["B"], s["median_s"]),
                        "extra_peak_mb": s["extra_peak_mb"],
                        "peak_rss_mb": s["peak_rss_mb"],
                    }
                )
                truth = truths.get(res["d"])
                if truth is None:
                    row["check"] = None
                    errors.append(
                        {
                            "what": f"{res['tag']} d={res['d']} B={s['B']} k={s['k']}",
                            "error": "unchecked: no float64 answer for this dimension",
                        }
                    )
                else:
                    row["check"] = report.check_row(s["npz"], truth)
            table.setdefault(key, {})[res["tag"]] = row
    for rows in table.values():
        base = rows.get(report.BASELINE)
        for row in rows.values():
            if base and "median_s" in base and "median_s" in row:
                row["ratio_to_recfast"] = row["median_s"] / base["median_s"]
        faiss = [
            rows[t]
            for t in ("faiss-default", "faiss-blas", "faiss-shards")
            if "median_s" in rows.get(t, {})
        ]
        if faiss:
            best = min(faiss, key=lambda r: r["median_s"])
            rows["faiss-best"] = dict(
                best, tag="faiss-best", label=report.LABELS["faiss-best"], **{"from": best["tag"]}
            )
    flat = []
    for key in sorted(table):
        for tag, _ in report.ROWS:
            if tag in table[key]:
                flat.append(dict(table[key][tag]))
    return table, flat, errors, truth_info


if __name__ == "__main__":
    sys.exit(main())
