"""CRE-ReasonBench: the teacher's mechanistic rationales for cards, and their format checks."""
