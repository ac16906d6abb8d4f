"""Stage I: supervised fine-tuning of the base LLM to write the teacher's rationale from the card alone."""
