"""conceptmask-concepts: concept vocabulary, PMI word vectors and the overlap matrix.

Writes into --out_dir: concepts.tsv (concept, count, idf; line i + 2 = row i),
word_vectors.npy (float32 [V, D]), overlap.npz (O, gamma, co-occurrence over the concepts
with masks or boxes; empty with --overlap_source=none) and vector_diagnostics.json (concepts
whose vectors are zero or near-identical to others', also warned about in the summary).

Examples:
    conceptmask-concepts --data_root=/tmp/world --dim=64 --out_dir=/tmp/work/concepts
    conceptmask-concepts --tags=tags.jsonl --dim=512 --min_count=5 --out_dir=concepts
    conceptmask-concepts --tags=oi_image_labels.csv \
        --label_descriptions=oi_class_descriptions.csv --dim=256 --out_dir=concepts
"""

from __future__ import annotations

import logging
import sys

from absl import app, flags

from conceptmask_tf.concepts import build
from conceptmask_tf.concepts.overlap_sources import SOURCES
from conceptmask_tf.data.layout import DataRoot
from conceptmask_tf.errors import DataError


def define_flags(fv: flags.FlagValues = flags.FLAGS) -> None:
    """Registers the binary's flags; done in `run`, so importing this module defines none."""
    flags.DEFINE_string("tags", None, "Tag file: tags.jsonl, or an Open Images image-level "
                        "labels CSV with --label_descriptions. Default: <data_root>/tags.jsonl.",
                        flag_values=fv)
    flags.DEFINE_string("label_descriptions", None, "Open Images class descriptions CSV "
                        "(LabelName,DisplayName, no header): --tags is then an Open Images "
                        "image-level labels CSV.", flag_values=fv)
    flags.DEFINE_integer("dim", None, "Word-vector dimension D (clamped to the vocabulary size "
                         "V, with a warning, when larger).", lower_bound=1, flag_values=fv)
    flags.DEFINE_string("out_dir", None, "Output folder.", flag_values=fv)
    flags.DEFINE_integer("min_count", 1, "Drop concepts held by fewer images.", lower_bound=1,
                         flag_values=fv)
    flags.DEFINE_string("data_root", None, "Data root (DESIGN.md §3) for the overlap matrix "
                        "and the default --tags.", flag_values=fv)
    flags.DEFINE_enum("overlap_source", None, SOURCES, "Annotations for the overlap matrix: "
                      "COCO masks, boxes (Open Images + Visual Genome), both (what the data "
                      "root has), or none. Default: both with --data_root, else none.",
                      flag_values=fv)
    flags.DEFINE_integer("overlap_grid", 64, "Masks and boxes are compared on a grid x grid "
                         "raster.", lower_bound=1, flag_values=fv)
    flags.DEFINE_enum("eigen_method", "auto", ["auto", "dense", "krylov"], "Eigen-solver: "
                      "dense LAPACK (small V), block Krylov (large V) or auto.", flag_values=fv)
    flags.DEFINE_float("eigen_tol", 1e-3, "Block-Krylov relative residual tolerance.",
                       flag_values=fv)
    flags.DEFINE_integer("seed", 0, "Seed of the eigen-solver's random start.", flag_values=fv)
    flags.DEFINE_bool("strict", False, "Stop at the first bad record instead of counting it "
                      "as a skip.", flag_values=fv)
    flags.DEFINE_bool("progress", True, "Show progress bars on stderr.", flag_values=fv)
    flags.mark_flags_as_required(["dim", "out_dir"], flag_values=fv)


def main(argv: list[str]) -> int:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    fv = flags.FLAGS
    tags = fv.tags
    if tags is None:
        if fv.data_root is None:
            raise app.UsageError("give --tags or --data_root")
        tags = DataRoot(fv.data_root).require(DataRoot(fv.data_root).tags, "--tags")
    source = fv.overlap_source or ("both" if fv.data_root else "none")
    if source != "none" and fv.data_root is None:
        raise app.UsageError(f"--overlap_source={source} needs --data_root")
    logging.getLogger("conceptmask_tf").setLevel(logging.INFO)
    try:
        summary = build.build_concepts(
            tags, fv.out_dir, fv.dim, min_count=fv.min_count,
            label_descriptions=fv.label_descriptions, data_root=fv.data_root,
            overlap_source=source, overlap_grid=fv.overlap_grid,
            eigen_method=fv.eigen_method, eigen_tol=fv.eigen_tol, seed=fv.seed,
            strict=fv.strict, progress=fv.progress)
    except (DataError, FileNotFoundError, ValueError) as e:
        print(f"conceptmask-concepts: {e}", file=sys.stderr)
        return 1
    print(summary.text())
    return 0


def run() -> None:
    define_flags()
    app.run(main)


if __name__ == "__main__":
    run()
