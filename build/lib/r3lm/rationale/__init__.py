"""The rationale format that every stage after the teacher reads: how a rationale is written and parsed
(`format`), checked against its card (`validate`), and what it claims about the card's motifs (`claims`)."""
