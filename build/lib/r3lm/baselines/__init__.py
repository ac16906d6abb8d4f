"""Baselines on the same splits as the reasoning model: a motif-count ridge and a specialised sequence CNN.

Both write the shared prediction format (r3lm.predictions), so the evaluation compares them with the
LLM methods row for row. The ridge shows what a bag of the card's motifs explains; the CNN shows what
a model that reads the raw sequence reaches.
"""
