"""Sanity check: the world_stage{1,2,3}.cfg presets train on the default concept world.

Generates the default concept world and its concept vectors (dim 32, overlap from masks and
boxes), trains stages 1-3 with the flagfile presets (parsed exactly as the binaries parse
them), composes the ConceptMask model, calibrates its presence threshold and weak-concept
theta on the validation files, and appends the figures to BENCHMARKS.md under
"Concept-world stage training check" (replacing an earlier copy of that section).

    /work/venv/bin/python benchmarks/world_stages_check.py [--work_dir D] [--max_images N]

A stage whose figures are already in <work_dir>/stages.json and whose model file exists is
not retrained (pass --retrain to train everything again). This is not the paper's tables.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Any

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SECTION = "## Concept-world stage training check"
STAGES = ("embedding", "refinement", "segmentation")
PRESETS = {"embedding": "flags/world_stage1.cfg", "refinement": "flags/world_stage2.cfg",
           "segmentation": "flags/world_stage3.cfg"}


def _prepare_data(work_dir: str) -> tuple[str, str]:
    """Generates the default world and its concept vectors unless already there."""
    from conceptmask_tf.concepts.build import build_concepts
    from conceptmask_tf.data.world import WorldConfig, generate_world

    world, concepts = os.path.join(work_dir, "world"), os.path.join(work_dir, "concepts")
    if not os.path.exists(os.path.join(world, "splits.json")):
        start = time.perf_counter()
        generate_world(WorldConfig(), world, overwrite=True, progress=False)
        print(f"world generated in {time.perf_counter() - start:.1f} s", flush=True)
    if not os.path.exists(os.path.join(concepts, "word_vectors.npy")):
        start = time.perf_counter()
        build_concepts(os.path.join(world, "tags.jsonl"), concepts, dim=32, data_root=world,
                       overlap_source="both")
        print(f"concepts built in {time.perf_counter() - start:.1f} s", flush=True)
    return world, concepts


def _preset_config(stage: str, extra: list[str]) -> Any:
    """The stage config from its flagfile plus `extra` flags, parsed like the binaries."""
    from absl import flags

    from conceptmask_tf.training.cli import config_from_flags, define_flags
    from conceptmask_tf.training.config import CONFIG_CLASSES

    cls = CONFIG_CLASSES[stage]
    fv = flags.FlagValues()
    define_flags(cls, fv)
    fv(["check", f"--flagfile={os.path.join(REPO, PRESETS[stage])}", *extra])
    return config_from_flags(cls, fv)


def _train_stages(world: str, concepts: str, models: str, record_path: str,
                  retrain: bool) -> dict[str, dict[str, Any]]:
    from conceptmask_tf.training import artifacts, embedding, refinement, segmentation

    train = {"embedding": embedding.train, "refinement": refinement.train,
             "segmentation": segmentation.train}
    record: dict[str, dict[str, Any]] = {}
    if os.path.exists(record_path) and not retrain:
        with open(record_path, encoding="utf-8") as f:
            record = json.load(f)
    for i, stage in enumerate(STAGES):
        model_dir = os.path.join(models, stage)
        done = os.path.exists(artifacts.model_path(model_dir, stage))
        if stage in record and done and not retrain:
            print(f"{stage}: reusing {model_dir}", flush=True)
            continue
        extra = [f"--data_root={world}", f"--concepts_dir={concepts}",
                 f"--model_dir={model_dir}"]
        if stage == "refinement":
            extra.append(f"--embedding_model_dir={os.path.join(models, 'embedding')}")
        if stage == "segmentation":
            extra.append(f"--refinement_model_dir={os.path.join(models, 'refinement')}")
        config = _preset_config(stage, extra)
        if retrain and os.path.exists(model_dir):
            import shutil
            shutil.rmtree(model_dir)
        print(f"stage {i + 1} ({stage}): training ...", flush=True)
        start = time.perf_counter()
        result = train[stage](config)
        seconds = time.perf_counter() - start
        history = {k: [float(x) for x in v] for k, v in result.history.items()}
        record[stage] = {"seconds": seconds, "epochs": result.config.epochs,
                         "steps_per_epoch": result.config.steps,
                         "batch_size": result.config.batch_size, "history": history}
        print(f"stage {i + 1} ({stage}): {seconds:.0f} s, loss "
              f"{history['loss'][0]:.4f} -> {history['loss'][-1]:.4f}", flush=True)
        with open(record_path, "w", encoding="utf-8") as f:
            json.dump(record, f, indent=1)
    return record


def _concept_mask(world: str, concepts: str, models: str) -> Any:
    """The inference model from the trained stages; supervised = strong + weak_box."""
    from conceptmask_tf.concepts.embeddings import ConceptEmbeddings
    from conceptmask_tf.data.layout import DataRoot
    from conceptmask_tf.data.splits import read_splits
    from conceptmask_tf.models import ConceptMask
    from conceptmask_tf.training import artifacts
    from conceptmask_tf.training.config import load_config

    embeddings = ConceptEmbeddings.load(concepts)
    splits = read_splits(DataRoot(world).splits)
    supervised = [c for c in (*splits["strong"], *splits["weak_box"]) if c in embeddings]
    seg_dir = os.path.join(models, "segmentation")
    seg_config = load_config(seg_dir)
    return ConceptMask(artifacts.load_stage_model(os.path.join(models, "refinement"),
                                                  "refinement"),
                       artifacts.load_stage_model(seg_dir, "segmentation"),
                       seg_config.image_size, seg_config.scales,
                       supervised_vectors=embeddings.vectors_for(supervised))


def _markdown(command: str, record: dict[str, dict[str, Any]],
              calibration: dict[str, Any] | None, error: str | None) -> str:
    lines = [SECTION, "",
             ("Sanity check that the `flags/world_stage{1,2,3}.cfg` presets train on the "
             "default concept world (`WorldConfig()`, concept vectors dim 32, overlap from "
             "masks and boxes) on this machine (2 shared CPU cores, TF 2.21 CPU), and that "
             "the composed ConceptMask model can be calibrated on `val/<split>.json`. "
             "Not the paper's tables."), "",
             f"Command (from /work/main): `{command}`", "",
             "| stage | preset | epochs x steps (batch) | loss first -> last epoch | wall s |",
             "|---|---|---|---|---|"]
    for stage in STAGES:
        if stage not in record:
            lines.append(f"| {stage} | {PRESETS[stage]} | - | not trained | - |")
            continue
        r = record[stage]
        loss = r["history"]["loss"]
        lines.append(f"| {stage} | {PRESETS[stage]} | {r['epochs']} x {r['steps_per_epoch']}"
                     f" ({r['batch_size']}) | {loss[0]:.4f} -> {loss[-1]:.4f} | "
                     f"{r['seconds']:.0f} |")
    extra = []
    for stage in STAGES:
        if stage in record:
            others = {k: v for k, v in record[stage]["history"].items() if k != "loss" and v}
            if others:
                extra.append(f"- {stage} other logs (first -> last): " + ", ".join(
                    f"{k} {v[0]:.4f} -> {v[-1]:.4f}" for k, v in sorted(others.items())))
    if extra:
        lines += [""] + extra
    if calibration is not None:
        c = calibration
        lines += ["", (f"Calibration (`conceptmask_tf.training.calibration.calibrate_model`, "
                      f"{c['seconds']:.0f} s, up to {c['max_images']} val images per split):"),
                  "",
                  (f"- presence: threshold {c['threshold']:.4f}, scale {c['scale']:.2f} "
                  f"(balanced accuracy {c['presence']['balanced_accuracy']:.3f}, MCC "
                  f"{c['presence']['mcc']:.3f} on {c['presence']['positives']} present / "
                  f"{c['presence']['negatives']} verified-absent pairs; similarity range "
                  f"{c['presence']['min_similarity']:.3f} .. "
                  f"{c['presence']['max_similarity']:.3f})"),
                  f"- weak theta: {c['theta']} (weak_image val mean IoU per theta: " +
                  ", ".join(f"{t}: {v:.3f}" for t, v in c["theta_iou"].items()) + ")",
                  "- val mean IoU (masks at 0.5, per concept then over concepts, chosen "
                  "theta): " + ", ".join(f"{s} {v['iou']:.3f} ({v['concepts']} concepts, "
                                          f"{v['images']} images)"
                                          for s, v in c["split_iou"].items()),
                  "- mean mask probability on / off the ground truth (diagnostic): " +
                  ", ".join(f"{s} {v['prob_inside']:.3f} / {v['prob_outside']:.3f}"
                            for s, v in c["split_iou"].items())]
        weak = [s for s, v in c["split_iou"].items()
                if v["iou"] < 0.05 and v["prob_inside"] > v["prob_outside"]]
        if weak:
            lines += ["", (f"Reading: on {', '.join(weak)} the masks are higher on the ground "
                          "truth than off it but stay below 0.5, so the IoU at 0.5 is near "
                          "zero: the preset schedules leave stage 3 under-confident (a "
                          "training-quality finding for the evaluation issue, not a crash).")]
        if c["presence"]["balanced_accuracy"] < 0.7:
            lines += ["", ("Reading: the stage-1 image-level similarity separates present from "
                          "verified-absent concepts only weakly (balanced accuracy above).")]
    if error:
        lines += ["", f"**Failure:** {error}"]
    return "\n".join(lines) + "\n"


def _write_section(path: str, text: str) -> None:
    """Replaces this script's section in BENCHMARKS.md (or appends it); others untouched."""
    old = ""
    if os.path.exists(path):
        with open(path, encoding="utf-8") as f:
            old = f.read()
    if SECTION in old:
        head, rest = old.split(SECTION, 1)
        tail = rest.find("\n## ")
        old = head + (rest[tail + 1:] if tail >= 0 else "")
    if not old:
        old = "# Benchmarks\n"
    if not old.endswith("\n\n"):
        old = old.rstrip("\n") + "\n\n"
    with open(path, "w", encoding="utf-8") as f:
        f.write(old + text)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work_dir", default=os.path.join(REPO, "benchmarks", "out",
                                                           "stages"))
    parser.add_argument("--max_images", type=int, default=40,
                        help="Validation images per split used for calibration.")
    parser.add_argument("--retrain", action="store_true")
    parser.add_argument("--benchmarks_md", default=os.path.join(REPO, "BENCHMARKS.md"))
    args = parser.parse_args()
    command = "/work/venv/bin/python " + " ".join(
        [os.path.relpath(os.path.abspath(sys.argv[0]), REPO), *sys.argv[1:]])
    sys.path.insert(0, REPO)
    os.makedirs(args.work_dir, exist_ok=True)
    world, concepts = _prepare_data(args.work_dir)
    models = os.path.join(args.work_dir, "models")
    record: dict[str, dict[str, Any]] = {}
    calibration, error = None, None
    try:
        record = _train_stages(world, concepts, models,
                               os.path.join(args.work_dir, "stages.json"), args.retrain)
        from conceptmask_tf.training.calibration import calibrate_model

        model = _concept_mask(world, concepts, models)
        start = time.perf_counter()
        calibration = calibrate_model(model, world, concepts, max_images=args.max_images)
        calibration["seconds"] = time.perf_counter() - start
        calibration["max_images"] = args.max_images
        print(json.dumps(calibration, indent=1), flush=True)
        with open(os.path.join(args.work_dir, "calibration.json"), "w",
                  encoding="utf-8") as f:
            json.dump(calibration, f, indent=1)
    except Exception as e:  # recorded, then re-raised
        error = f"{type(e).__name__}: {e}"
        raise
    finally:
        for stage in STAGES:
            if stage in record:
                loss = record[stage]["history"]["loss"]
                print(f"{stage}: loss {loss[0]:.4f} -> {loss[-1]:.4f}, "
                      f"{record[stage]['seconds']:.0f} s")
        _write_section(args.benchmarks_md, _markdown(command, record, calibration, error))
        print(f"wrote section to {args.benchmarks_md}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
