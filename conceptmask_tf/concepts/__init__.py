"""Concepts: vocabulary, PMI word vectors, soft-topic and phrase vectors, overlap (§4.1-4.2).

Modules (numpy, scipy, pyarrow; no TensorFlow on import: files go through `base.files`,
whose tf.io.gfile is imported on the first read or write):
    names          normalize_concept, shared by every reader.
    vocabulary     Vocabulary: concepts, image counts, idf; concepts.tsv.
    cooccurrence   co-occurrence counts n_ij from a CSR tag corpus.
    pmi            PMI matrix from the counts.
    eigen          top-k eigenpairs (dense LAPACK or block Krylov).
    word_vectors   tag corpus -> vocabulary + word vectors (concept_vectors_from_corpus).
    embeddings     ConceptEmbeddings (vector / phrase / soft-topic), soft_topic_vectors.
    overlap        overlap ratio O (eq. 3), gamma (eq. 4), overlap.npz.
    overlap_sources  per-image grid masks from a data root's COCO masks and boxes.
    build          build_concepts: what `conceptmask-concepts` runs.
"""
