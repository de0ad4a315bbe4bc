"""Concept vectors at the paper's scale: tags.jsonl -> concepts.tsv + word_vectors.npy.

Generates (and caches) a synthetic Stock-18K-like tag file (`concept_vectors_corpus.py`),
then runs the library path the ``conceptmask-concepts`` binary runs (`build.build_concepts`,
overlap "none") and reports the wall time of each phase, the peak resident memory (overall
and per phase, from a sampling thread) and the eigen-solver's accuracy. Optionally checks the
eigenvalues against a reference solver and times the straightforward scipy path.

Paper scale (goal: <= 5 min, <= 8 GB on 2 cores):
    python benchmarks/concept_vectors_scale.py --num_images 6000000 --vocab 18000 --dim 512
Small check with a dense reference:
    python benchmarks/concept_vectors_scale.py --num_images 200000 --vocab 3000 --dim 256 \
        --reference dense
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sys
import tempfile
import threading
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import concept_vectors_corpus

from conceptmask_tf.concepts import build, cooccurrence, pmi
from conceptmask_tf.concepts.vocabulary import Vocabulary

PHASES = ("read", "vocabulary", "cooccurrence", "pmi", "eigen", "overlap", "write")


class MemorySampler:
    """Samples this process's resident memory (VmRSS) every `interval` seconds."""

    def __init__(self, interval: float = 0.05) -> None:
        self.samples: list[tuple[float, float]] = []  # (seconds since start, GB)
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.start = time.time()

    def _run(self) -> None:
        while not self._stop.is_set():
            with open("/proc/self/status", encoding="ascii") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        self.samples.append((time.time() - self.start,
                                             int(line.split()[1]) / 1e6))
                        break
            self._stop.wait(self._interval)

    def __enter__(self) -> MemorySampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def peak(self, start: float, stop: float) -> float:
        """Peak GB between two times (widened by one interval, so short phases get one)."""
        inside = [gb for t, gb in self.samples
                  if start - self._interval <= t <= stop + self._interval]
        return max(inside, default=float("nan"))


def corpus_path(args: argparse.Namespace) -> str:
    name = (f"tags_n{args.num_images}_v{args.vocab}_t{args.mean_tags:g}_s{args.seed}.jsonl")
    return os.path.join(args.data_dir, name)


def run_library(tags_path: str, args: argparse.Namespace) -> dict:
    """The binary's path, timed phase by phase."""
    out_dir = tempfile.mkdtemp(prefix="concept_vectors_")
    with MemorySampler() as memory:
        start = time.time()
        summary = build.build_concepts(tags_path, out_dir, args.dim, min_count=args.min_count,
                                       eigen_tol=args.eigen_tol, progress=args.progress)
        wall = time.time() - start
    phases, offset = {}, start - memory.start
    for phase in PHASES:
        duration = summary.timer.wall.get(phase, 0.0)
        phases[phase] = {"seconds": duration, "cpu_seconds": summary.timer.cpu.get(phase, 0.0),
                         "peak_rss_gb": memory.peak(offset, offset + duration)}
        offset += duration
    eig = summary.concepts.eigen
    rel = eig.relative_residuals
    return {
        "out_dir": out_dir, "wall_seconds": wall, "phases": phases,
        "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6,
        "num_images": summary.num_images, "num_tags": summary.num_tags,
        "vocab": len(summary.concepts.vocabulary), "dim": summary.concepts.vectors.shape[1],
        "eigen": {"method": eig.method, "cycles": eig.cycles, "products": eig.products,
                  "max_relative_residual": float(rel.max()),
                  "median_relative_residual": float(np.median(rel)),
                  "lambda_1": float(eig.values[0]), "lambda_D": float(eig.values[-1]),
                  "energy_kept": summary.concepts.energy_kept},
        "values": eig.values.tolist(),
    }


def pmi_of(tags_path: str, min_count: int) -> tuple[np.ndarray, int]:
    """The PMI matrix of the file, through the library (for the reference checks)."""
    corpus = build.read_corpus(tags_path)
    vocab, id_map = Vocabulary.from_counts(corpus.names, corpus.counts(), corpus.num_images,
                                           min_count)
    indptr, ids = cooccurrence.relabel(corpus.indptr, corpus.tag_ids, id_map)
    counts = cooccurrence.cooccurrence_counts(indptr, ids, len(vocab))
    return pmi.pmi_matrix(counts, vocab.num_images, overwrite=True), corpus.num_images


def reference_check(tags_path: str, args: argparse.Namespace, values: np.ndarray) -> dict:
    """Eigenvalues of a reference solver (dense LAPACK or ARPACK, float64) vs the library's."""
    import scipy.linalg  # pylint: disable=import-outside-toplevel
    import scipy.sparse.linalg  # pylint: disable=import-outside-toplevel
    matrix, _ = pmi_of(tags_path, args.min_count)
    matrix = matrix.astype(np.float64)
    v, d = len(matrix), len(values)
    start = time.time()
    if args.reference == "dense":
        ref = scipy.linalg.eigh(matrix, eigvals_only=True, subset_by_index=[v - d, v - 1])
    else:
        ref = scipy.sparse.linalg.eigsh(matrix, k=d, which="LA", return_eigenvectors=False)
    seconds = time.time() - start
    ref = np.sort(ref)[::-1]
    err = np.abs(values - ref) / np.abs(ref)
    return {"solver": args.reference, "seconds": seconds, "max_relative_error": float(err.max()),
            "median_relative_error": float(np.median(err))}


def scipy_baseline(tags_path: str, args: argparse.Namespace) -> dict:
    """DESIGN.md §9's straightforward path: sparse X^T X in 6 chunks, dense PMI, eigsh."""
    import scipy.sparse  # pylint: disable=import-outside-toplevel
    import scipy.sparse.linalg  # pylint: disable=import-outside-toplevel
    corpus = build.read_corpus(tags_path)
    n, v = corpus.num_images, len(corpus.names)
    x = scipy.sparse.csr_matrix((np.ones(len(corpus.tag_ids), np.float32), corpus.tag_ids,
                                 corpus.indptr), shape=(n, v))
    start = time.time()
    counts = np.zeros((v, v), np.float32)
    for rows in np.array_split(np.arange(n), 6):
        part = x[rows[0]:rows[-1] + 1]
        counts += (part.T @ part).toarray()
    result = {"cooccurrence_seconds": time.time() - start}
    if args.baseline == "all":
        matrix = pmi.pmi_matrix(counts, n, overwrite=True)
        start = time.time()
        scipy.sparse.linalg.eigsh(matrix, k=min(args.dim, v - 1), which="LA")
        result["eigsh_seconds"] = time.time() - start
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--num_images", type=int, default=6_000_000)
    parser.add_argument("--vocab", type=int, default=18_000)
    parser.add_argument("--mean_tags", type=float, default=30.0)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--min_count", type=int, default=1)
    parser.add_argument("--eigen_tol", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data_dir", default=os.path.join(os.path.dirname(__file__), "out"),
                        help="Cache folder of the generated tag files (gitignored).")
    parser.add_argument("--json_out", default=None, help="Write the results here too.")
    parser.add_argument("--reference", choices=["none", "dense", "arpack"], default="none",
                        help="Check the eigenvalues against a float64 reference solver.")
    parser.add_argument("--baseline", choices=["none", "cooccurrence", "all"], default="none",
                        help="Also time the straightforward scipy path (slow at scale): "
                             "its co-occurrence count, or that and eigsh.")
    parser.add_argument("--progress", action="store_true")
    args = parser.parse_args()

    path = corpus_path(args)
    generated = None
    if not os.path.exists(path):
        generated = concept_vectors_corpus.write_corpus(path, args.num_images, args.vocab,
                                                        args.mean_tags, args.seed)
    load_before = os.getloadavg()
    result = run_library(path, args)
    result["load_average_before"] = load_before
    result["load_average_after"] = os.getloadavg()
    result["corpus"] = {"path": path, "bytes": os.path.getsize(path), "generated": generated}
    result["machine"] = {"cpus": os.cpu_count(), "python": platform.python_version(),
                         "numpy": np.__version__}
    if args.reference != "none":
        result["reference"] = reference_check(path, args, np.asarray(result["values"]))
    if args.baseline != "none":
        result["scipy_baseline"] = scipy_baseline(path, args)
    del result["values"]

    print(f"\ncorpus {path}: {result['num_images']:,} images, {result['num_tags']:,} tags, "
          f"V = {result['vocab']:,}, D = {result['dim']}, "
          f"{result['corpus']['bytes'] / 1e9:.2f} GB")
    print(f"{'phase':<14}{'wall s':>9}{'CPU s':>9}{'peak RSS GB':>13}")
    for phase, row in result["phases"].items():
        print(f"{phase:<14}{row['seconds']:>9.1f}{row['cpu_seconds']:>9.1f}"
              f"{row['peak_rss_gb']:>13.2f}")
    cpu = sum(row["cpu_seconds"] for row in result["phases"].values())
    print(f"{'total':<14}{result['wall_seconds']:>9.1f}{cpu:>9.1f}{result['peak_rss_gb']:>13.2f}")
    e = result["eigen"]
    print(f"eigen: {e['method']}, {e['cycles']} cycles, {e['products']} matrix-vector products, "
          f"relative residual max {e['max_relative_residual']:.1e} "
          f"median {e['median_relative_residual']:.1e}; lambda {e['lambda_1']:.4g} .. "
          f"{e['lambda_D']:.4g}; energy kept {e['energy_kept']:.1%}")
    if "reference" in result:
        r = result["reference"]
        print(f"reference ({r['solver']}, {r['seconds']:.0f} s): eigenvalue relative error "
              f"max {r['max_relative_error']:.1e} median {r['median_relative_error']:.1e}")
    if "scipy_baseline" in result:
        b = result["scipy_baseline"]
        print(f"scipy baseline: co-occurrence {b['cooccurrence_seconds']:.0f} s"
              + (f", eigsh {b['eigsh_seconds']:.0f} s" if "eigsh_seconds" in b else ""))
    print(f"load average before {load_before}, after {result['load_average_after']}")
    if args.json_out:
        with open(args.json_out, "w", encoding="utf-8") as f:
            json.dump(result, f, indent=2)


if __name__ == "__main__":
    main()
