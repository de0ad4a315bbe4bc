"""The tiny world's files agree with the scenes behind them and with the data-root contract."""

import collections
import csv
import dataclasses
import json
import os

import numpy as np
import pytest
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO

from conceptmask_tf.data.layout import SPLITS, DataRoot
from conceptmask_tf.data.world import concept_mask, generate_world


def _json(path):
    with open(path) as f:
        return json.load(f)


def _csv(path, header=True):
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    return (rows[0], rows[1:]) if header else rows


@pytest.fixture(scope="module")
def root(tiny_world):
    return DataRoot(tiny_world.root)


def _eval_files(root):
    return [(part, split, (root.val_file if part == "val" else root.eval_file)(split))
            for part in ("val", "test") for split in SPLITS]


def test_every_file_of_the_layout_exists(root):
    for path in (root.tags, root.coco_instances, root.oi_boxes, root.oi_class_descriptions,
                 root.oi_image_labels, root.vg_objects, root.vg_image_data, root.splits,
                 root.path("world.json"), *[p for _, _, p in _eval_files(root)]):
        assert os.path.isfile(path), path
    assert not os.path.exists(root.root + ".tmp")


def test_splits_and_world_json_agree_with_the_ontology(tiny_world, root):
    splits = _json(root.splits)
    assert splits == tiny_world.ontology.splits()
    world = _json(root.path("world.json"))
    assert world["splits"] == splits
    assert world["config"]["seed"] == tiny_world.config.seed
    types = {c["name"]: c["type"] for c in world["concepts"]}
    assert all(types[c] != "context" for level in splits.values() for c in level)


def test_tags_name_training_images_and_known_concepts(tiny_world, root):
    with open(root.tags) as f:
        lines = [json.loads(line) for line in f]
    assert len(lines) == tiny_world.config.num_images
    known = set(tiny_world.ontology.names())
    for line in lines:
        assert line["image"].startswith("images/train_")
        assert os.path.isfile(root.path(line["image"]))
        assert line["tags"] and set(line["tags"]) <= known


def test_tags_follow_the_scene_up_to_the_configured_noise(tiny_world, root):
    with open(root.tags) as f:
        lines = [json.loads(line) for line in f]
    onto, min_px = tiny_world.ontology, tiny_world.config.region_min_pixels
    wrong = 0
    kept = total = 0
    for line in lines:
        scene = tiny_world.scenes[os.path.basename(line["image"])]
        present = {c.name for c in onto.region_concepts
                   if concept_mask(scene, c).sum() >= min_px}
        extra = set(line["tags"]) - present - set(scene.context)
        assert len(extra) <= 1  # at most one wrong tag per image
        wrong += len(extra)
        kept += len(present & set(line["tags"]))
        total += len(present)
    assert wrong <= len(lines) * 0.5
    assert 0.7 < kept / total < 0.97  # tag_drop_rate 0.15


def test_zero_shot_never_a_training_target(tiny_world, root):
    onto = tiny_world.ontology
    zero = onto.at_level("zero_shot")
    names, mids, ids = {c.name for c in zero}, {c.mid for c in zero}, {c.id for c in zero}
    coco = _json(root.coco_instances)
    assert not {c["name"] for c in coco["categories"]} & names
    assert not {a["category_id"] for a in coco["annotations"]} & ids
    for path, column in ((root.oi_boxes, 2), (root.oi_image_labels, 2)):
        assert not {row[column] for row in _csv(path)[1]} & mids, path
    assert not {row[0] for row in _csv(root.oi_class_descriptions, header=False)} & mids
    descriptions = {row[1].lower() for row in _csv(root.oi_class_descriptions, header=False)}
    assert not descriptions & names
    vg_names = {n for img in _json(root.vg_objects) for o in img["objects"] for n in o["names"]}
    assert not vg_names & names
    tagged = set()
    with open(root.tags) as f:
        for line in f:
            tagged |= set(json.loads(line)["tags"])
    assert tagged & names  # they do appear in tags, so they get word vectors


def test_context_tags_never_have_regions_or_boxes(tiny_world, root):
    onto = tiny_world.ontology
    context = onto.names(("context",))
    context_mids = {onto.concept(c).mid for c in context}
    assert not context_mids & {row[2] for row in _csv(root.oi_boxes)[1]}
    vg_names = {n for img in _json(root.vg_objects) for o in img["objects"] for n in o["names"]}
    assert not vg_names & set(context)
    for _, _, path in _eval_files(root):
        assert not {c["name"] for c in _json(path)["categories"]} & set(context)


def test_coco_masks_are_the_visible_instances_of_strong_objects(tiny_world, root):
    coco = COCO(root.coco_instances)
    strong = {c.id: c.name for c in tiny_world.ontology.at_level("strong")}
    assert set(coco.getCatIds()) == set(strong)
    checked = 0
    for image in coco.dataset["images"]:
        scene = tiny_world.scenes[image["file_name"]]
        expected = sorted(int((scene.object_map == i).sum()) for i, o in enumerate(scene.objects)
                          if o.concept in strong.values() and (scene.object_map == i).any())
        anns = coco.loadAnns(coco.getAnnIds(imgIds=image["id"]))
        assert sorted(int(a["area"]) for a in anns) == expected
        for ann in anns:
            mask = coco.annToMask(ann).astype(bool)
            instances = [i for i, o in enumerate(scene.objects)
                         if np.array_equal(scene.object_map == i, mask)]
            assert len(instances) == 1
            assert scene.objects[instances[0]].concept == strong[ann["category_id"]]
            checked += 1
    assert checked > 0


def test_open_images_boxes(tiny_world, root):
    header, rows = _csv(root.oi_boxes)
    assert header[:8] == ["ImageID", "Source", "LabelName", "Confidence", "XMin", "XMax", "YMin",
                          "YMax"]
    described = {row[0] for row in _csv(root.oi_class_descriptions, header=False)}
    allowed = {c.mid for c in tiny_world.ontology.box_concepts("oi")}
    assert rows
    for row in rows:
        xmin, xmax, ymin, ymax = map(float, row[4:8])
        assert 0.0 <= xmin < xmax <= 1.0 and 0.0 <= ymin < ymax <= 1.0
        assert row[2] in described and row[2] in allowed
        assert os.path.isfile(root.path("images", row[0] + ".jpg"))
    _, labels = _csv(root.oi_image_labels)
    assert {row[3] for row in labels} == {"0", "1"}
    assert {row[2] for row in labels} <= described


def test_open_images_boxes_match_the_scene(tiny_world, root):
    _, rows = _csv(root.oi_boxes)
    by_mid = {c.mid: c for c in tiny_world.ontology.concepts}
    size = tiny_world.config.image_size
    for row in rows[:200]:
        scene = tiny_world.scenes[row[0] + ".jpg"]
        mask = concept_mask(scene, by_mid[row[2]])
        x0, x1, y0, y1 = (round(float(v) * size) for v in row[4:8])
        box = mask[y0:y1, x0:x1]
        # The box is tight: the concept touches each of its four sides.
        assert box[:, 0].any() and box[:, -1].any() and box[0].any() and box[-1].any()


def test_visual_genome_boxes(tiny_world, root):
    objects, images = _json(root.vg_objects), _json(root.vg_image_data)
    size = {img["image_id"]: (img["width"], img["height"]) for img in images}
    assert {img["image_id"] for img in objects} == set(size)
    allowed = {c.name for c in tiny_world.ontology.box_concepts("vg")}
    for img in images:
        assert os.path.isfile(root.path("images", os.path.basename(img["url"])))
    for entry in objects:
        w, h = size[entry["image_id"]]
        for obj in entry["objects"]:
            assert obj["x"] >= 0 and obj["y"] >= 0 and obj["w"] > 0 and obj["h"] > 0
            assert obj["x"] + obj["w"] <= w and obj["y"] + obj["h"] <= h
            assert set(obj["names"]) <= allowed


def test_held_out_images_are_disjoint_from_training(tiny_world, root):
    training = set()
    with open(root.tags) as f:
        training |= {os.path.basename(json.loads(line)["image"]) for line in f}
    training |= {i["file_name"] for i in _json(root.coco_instances)["images"]}
    training |= {row[0] + ".jpg" for row in _csv(root.oi_boxes)[1]}
    training |= {os.path.basename(i["url"]) for i in _json(root.vg_image_data)}
    train_ids = {i["id"] for i in _json(root.coco_instances)["images"]}
    seen = {}
    for part, split, path in _eval_files(root):
        data = _json(path)
        names = {i["file_name"] for i in data["images"]}
        assert not names & training
        assert not {i["id"] for i in data["images"]} & train_ids
        seen.setdefault(part, set()).update(names)
    assert not seen["val"] & seen["test"]


def test_eval_ground_truth_matches_the_scenes(tiny_world, root):
    onto, min_px = tiny_world.ontology, tiny_world.config.region_min_pixels
    several = 0
    for part, split, path in _eval_files(root):
        coco = COCO(path)
        categories = {c["id"]: c["name"] for c in coco.dataset["categories"]}
        assert sorted(categories.values()) == sorted(c.name for c in onto.at_level(split))
        positives = dict.fromkeys(categories, 0)
        for image in coco.dataset["images"]:
            scene = tiny_world.scenes[image["file_name"]]
            anns = coco.loadAnns(coco.getAnnIds(imgIds=image["id"]))
            by_category = {}
            for ann in anns:
                by_category.setdefault(ann["category_id"], []).append(ann)
            for cid, instances in by_category.items():
                # One annotation per visible instance: disjoint masks whose union is the
                # concept's region, each with the box of its own pixels.
                expected = concept_mask(scene, onto.concept(categories[cid]))
                masks = [coco.annToMask(ann).astype(bool) for ann in instances]
                assert np.array_equal(np.sum(masks, axis=0), expected)
                for ann, mask in zip(instances, masks):
                    rows, cols = np.nonzero(mask)
                    assert ann["bbox"] == [cols.min(), rows.min(), cols.max() - cols.min() + 1,
                                           rows.max() - rows.min() + 1]
                assert expected.sum() >= min_px
                positives[cid] += 1
                several += len(instances) > 1
            for cid in image["neg_category_ids"]:
                assert not concept_mask(scene, onto.concept(categories[cid])).any()
            assert not set(image["neg_category_ids"]) & set(by_category)
        assert min(positives.values()) >= tiny_world.config.min_eval_positives, (part, split)
    assert several  # some concept has several instances in one image


def test_eval_rle_is_compressed_coco(root):
    data = _json(root.eval_file("strong"))
    ann = data["annotations"][0]
    rle = {"size": ann["segmentation"]["size"], "counts": ann["segmentation"]["counts"].encode()}
    assert mask_utils.area(rle) == ann["area"]


def test_oracle_boxes_add_the_weak_image_boxes_and_change_nothing_else(tiny_world, root,
                                                                         tmp_path):
    oracle_root = DataRoot(str(tmp_path / "oracle"))
    generate_world(dataclasses.replace(tiny_world.config, oracle_boxes=True), oracle_root.root,
                   progress=False)
    for path in (root.tags, root.coco_instances, root.oi_image_labels, root.vg_objects,
                 root.val_file("weak_image"), root.eval_file("zero_shot")):
        with open(path, "rb") as a, open(oracle_root.path(os.path.relpath(path, root.root)),
                                         "rb") as b:
            assert a.read() == b.read(), path
    for name in sorted(os.listdir(root.images_dir))[::7]:
        with open(root.path("images", name), "rb") as a, \
                open(oracle_root.path("images", name), "rb") as b:
            assert a.read() == b.read(), name
    _, plain_rows = _csv(root.oi_boxes)
    _, oracle_rows = _csv(oracle_root.oi_boxes)
    weak_image = {c.mid: c for c in tiny_world.ontology.at_level("weak_image")}
    added = [row for row in oracle_rows if row not in plain_rows]
    assert [row for row in oracle_rows if row[2] not in weak_image] == plain_rows
    assert added and all(row[2] in weak_image for row in added)
    size = tiny_world.config.image_size
    boxed = collections.defaultdict(set)
    for row in added:
        scene = tiny_world.scenes[row[0] + ".jpg"]
        mask = concept_mask(scene, weak_image[row[2]])
        x0, x1, y0, y1 = (round(float(v) * size) for v in row[4:8])
        box = mask[y0:y1, x0:x1]
        assert box[:, 0].any() and box[:, -1].any() and box[0].any() and box[-1].any(), row
        boxed[row[0]].add(row[2])
    # Every weak_image concept visible in an Open Images image has a box there: attributes
    # and phrases (boxes of the objects they name) as well as objects, parts and stuff.
    _, labels = _csv(root.oi_image_labels)
    for stem in sorted({row[0] for row in labels}):
        scene = tiny_world.scenes[stem + ".jpg"]
        visible = {mid for mid, c in weak_image.items() if concept_mask(scene, c).any()}
        assert boxed[stem] == visible, stem
    kinds = {weak_image[row[2]].type for row in added}
    assert {"attribute", "phrase"} <= kinds
