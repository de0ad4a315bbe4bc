"""Concept splits (splits.json) and their ground-truth files (eval/ and val/)."""

from __future__ import annotations

from conceptmask_tf.base.names import normalize_concept
from conceptmask_tf.data import coco
from conceptmask_tf.data.layout import SPLITS, DataRoot
from conceptmask_tf.data.records import load_json, require_dict
from conceptmask_tf.data.skips import SkipCounter
from conceptmask_tf.data.types import MaskedImage
from conceptmask_tf.errors import DataError

GROUND_TRUTH_KINDS = ("eval", "val")


def read_splits(path: str) -> dict[str, tuple[str, ...]]:
    """Reads splits.json: {"strong": [...], "weak_box": [...], "weak_image": [...], ...}.

    The keys must be exactly `layout.SPLITS` (strong, weak_box, weak_image, zero_shot).

    Concept names are normalised; a name repeated within one split is kept once.

    Args:
        path: The JSON file.

    Returns:
        split -> concepts (file order), keys in `layout.SPLITS` order.

    Raises:
        DataError: Not valid JSON, not an object, a missing or unknown split key, a
            split that is not a list of strings, a name with no word characters, or a
            concept listed in two splits. The message names the file and the split.
    """
    data = require_dict(load_json(path), "the top level", path)
    missing = [s for s in SPLITS if s not in data]
    unknown = [k for k in data if k not in SPLITS]
    if missing or unknown:
        raise DataError(f"expected exactly the keys {', '.join(SPLITS)}; missing: "
                        f"{', '.join(missing) or 'none'}; unknown: "
                        f"{', '.join(map(str, unknown)) or 'none'}", path=path)
    splits: dict[str, tuple[str, ...]] = {}
    split_of: dict[str, str] = {}
    for split in SPLITS:
        names = data[split]
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise DataError("must be a list of concept names (strings)", path=path,
                            record=split)
        concepts = []
        for name in names:
            concept = normalize_concept(name)
            if not concept:
                raise DataError(f"concept name {name!r} has no word characters", path=path,
                                record=split)
            other = split_of.setdefault(concept, split)
            if other != split:
                raise DataError(f"concept {concept!r} is in two splits: {other} and {split}",
                                path=path, record=split)
            concepts.append(concept)
        splits[split] = tuple(dict.fromkeys(concepts))
    return splits


def read_split_ground_truth(data_root: DataRoot, split: str, which: str = "eval",
                            skips: SkipCounter | None = None) -> list[MaskedImage]:
    """Reads the ground-truth masks of one split: eval/<split>.json or val/<split>.json.

    Args:
        data_root: The data root (DESIGN.md §3).
        split: One of `layout.SPLITS`.
        which: "eval" (test ground truth) or "val" (validation, for calibration).
        skips: Counts skipped records (a new counter is used if None).

    Returns:
        The images with merged masks and verified-absent concepts (see
        `coco.read_coco_instances`; image paths under "images/").

    Raises:
        ValueError: An unknown split or `which`.
        FileNotFoundError: The file does not exist (the message says which step needs it).
        DataError: A malformed file.
    """
    if which not in GROUND_TRUTH_KINDS:
        raise ValueError(f"which must be one of {', '.join(GROUND_TRUTH_KINDS)}, got {which!r}")
    path = data_root.eval_file(split) if which == "eval" else data_root.val_file(split)
    data_root.require(path, f"{'evaluation' if which == 'eval' else 'validation'} of the "
                            f"{split!r} split")
    return coco.read_coco_instances(path, image_prefix="images", skips=skips)
