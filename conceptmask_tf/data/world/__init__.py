"""The concept world: a procedural data root with every kind of concept the paper handles.

Objects (at very different scales) with parts inside them, stuff that partitions the
background, colour and texture attributes, multi-word phrases, text-only context tags, and
confusable concepts that never overlap, written in the public formats real data comes in
(COCO, Open Images CSV, Visual Genome JSON, tags.jsonl) with supervision levels assigned by
seed. See `generate_world` and `WorldConfig`; the layout is DESIGN.md §3.
"""

from conceptmask_tf.data.world.config import WorldConfig
from conceptmask_tf.data.world.generator import WorldSummary, generate_world
from conceptmask_tf.data.world.ontology import Concept, Ontology, build_ontology
from conceptmask_tf.data.world.regions import concept_areas, concept_mask
from conceptmask_tf.data.world.scene import RenderedScene, Requirement, sample_scene

__all__ = ["Concept", "Ontology", "RenderedScene", "Requirement", "WorldConfig",
           "WorldSummary", "build_ontology", "concept_areas", "concept_mask",
           "generate_world", "sample_scene"]
