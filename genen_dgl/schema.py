"""The graph's type names, in one place: node types, the relations between them, the variants.

A Genen graph has gene nodes and (in the ``go`` variants) GO-term nodes. Relations:
``gene -interacts-> gene`` (STRING), ``gene -annotated-> go`` and its reverse
``go -annotates-> gene`` (the GAF), and per ontology relation ``go -is_a-> go`` with its
``rev_is_a`` reverse (likewise ``part_of``, ``regulates``; the OBO).
"""

GENE = "gene"  # the node type every task labels and every model predicts
GO = "go"
PPI = (GENE, "interacts", GENE)
ANNOTATED = (GENE, "annotated", GO)
ANNOTATES = (GO, "annotates", GENE)
VARIANTS = ("ppi", "go", "go_ppi")  # genes and PPI; genes, GO and annotations; all of them
