"""Small hand-made corpus and queries shared by the stage tests."""

# Passages of very different lengths, so that length sorting really reorders them.
PASSAGES = [
    ("d0", "Cells", "Proteins fold in the cell."),
    ("d1", "", "A very long passage about the expression of genes in human cells " * 6),
    ("d2", "Mice", "Mice were given a high dose of the drug and the risk of disease was reduced."),
    ("d3", "Virus", "A virus."),
    (
        "d4",
        "Heart",
        "Blood levels of the protein were increased in patients with heart disease after treatment.",
    ),
    ("d5", "Brain", "The brain."),
    (
        "d6",
        "Study",
        "This study reports results from two studies of cancer treatment effects in human patients.",
    ),
]
QUERY_TEXTS = [
    ("q0", "what do proteins do in the cell"),
    ("q1", "heart disease"),
    ("q2", "does the drug reduce risk"),
]
