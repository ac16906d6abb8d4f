"""The `compact` style: the grounded teacher's steps as terse notes (motif names, GC, the tier; no positions
or scores), about 60% of brief's tokens, for a 135M student on a CPU, where every generated token costs time.

One phrasing each (it draws nothing from the seeded stream) and few digits (a 135M tokenizer spends a token
per digit): names carry the evidence; GC is the one number. The GC reading and the balance share a step.

On a card with an evidence line (rcc.evidence_tags) one step states the motifs by side in the line's own words
("In HepG2: up A; down B; neutral C, D."), where the untagged style writes "For HepG2:" and "Against:" steps:
a 135M student copied the line's words faithfully, but put neutral motifs "Against" in 9 of 150 real-card
rationales when it had to translate "down" and "neutral" into the teacher's words. The arrangement step, which
a student cannot work out from positions (it matched the teacher's kind of arrangement on 41% of real cards),
is copied from the line's layout too.
"""

from __future__ import annotations

from r3lm.rcc.evidence_tags import DIRECTIONS, NEUTRAL, sides
from r3lm.rcc.grammar import layout_phrase
from r3lm.reasoning.wording import Phrasing, leading_first, names, verdict


class CompactRenderer(Phrasing):
    def arrange(self, steps: list[str], min_steps: int) -> list[str]:
        """The GC step takes the balance's tier, unless that would leave fewer than `min_steps` steps."""
        if len(steps) > min_steps:
            return steps[:-2] + [f"{steps[-2][:-1]}; net {self.reading.net}."]
        return steps

    @property
    def tagged(self) -> bool:
        """The card shows its evidence line (the tier follows its net count)."""
        return self.reading.net_count is not None

    def overview(self) -> str:
        inventory = self.reading.inventory
        if inventory is None:
            return f"0 hits; no motifs on the {self.reading.card.length}-bp sequence."
        return f"{inventory.n_hits} hit{'s' if inventory.n_hits > 1 else ''}; top {inventory.top.name}."

    def sides(self) -> str:
        """The card's motifs by side, as its evidence line lists them (architectural sites are untagged there)."""
        reading = self.reading
        untagged = [site for site in reading.readings if site.kind in ("neutral", "architectural")]
        listed = {word: list(dict.fromkeys(site.hit.name for site in sites))
                  for word, sites in zip((*DIRECTIONS, NEUTRAL), (reading.pro, reading.con, untagged), strict=True)}
        return f"In {reading.cell}: {sides(listed)}."

    def activators(self) -> str:
        if self.tagged:
            return self.sides()
        if not self.reading.pro:
            return f"No {self.reading.cell} activator; closest {self.reading.leading.hit.name}."
        return f"For {self.reading.cell}: {names(self.reading.pro, 2)}."

    def counterweights(self) -> str | None:
        reading = self.reading
        if self.tagged:
            return None
        if not (reading.con or reading.architectural):
            others = reading.neutral or reading.pro
            return f"Against: none; {names(others, 2, more=False)} {'neutral' if reading.neutral else 'favour it'}."
        parts = [f"Against: {names(reading.con, 2)}"] if reading.con else ["Against: none"]
        if reading.architectural:
            parts.append(f"{names(reading.architectural, 1)} architectural")
        return "; ".join(parts) + "."

    def uninformative_sites(self) -> str:
        if self.tagged:
            return self.sides()
        return f"{names(leading_first(self.reading), 2, more=False)}: no {self.reading.cell} signal."

    def arrangement(self) -> str:
        """In the evidence line's words (rcc/grammar.py `layout_phrase`): on a tagged card the student copies it."""
        return f"Layout: {layout_phrase(self.reading.card.motifs, self.reading.layout)}."

    def site_quality(self) -> str:
        quality = self.reading.quality
        return f"{quality.lead.name} is a {'strong' if quality.strong else 'weak'} match."

    def composition(self) -> str:
        if self.tagged:  # a count the card does not print is one the student would guess
            return f"Only GC {self.reading.card.gc_text} to read."
        cpg = self.reading.composition.cpg
        return f"GC {self.reading.card.gc_text} with {cpg} CpG{'s' if cpg != 1 else ''}."

    def absent_sites(self) -> str:
        if self.tagged:  # the same step, in the same words, as on every other card
            return self.sides()
        return f"No sites for {self.reading.cell} activators or repressors."

    def gc_step(self) -> str:
        gc, reading = self.reading.card.gc_text, self.reading.gc
        if reading is None:
            return f"GC {gc}: no {self.reading.cell} trend known."
        return f"GC {gc}: {reading.place} the mean, {reading.effect} activity."

    def balance(self) -> str:
        return f"Net with GC {self.reading.card.gc_text}: {self.reading.net}."

    def conclusion(self) -> str:
        return f"Conclusion: {verdict(self.reading)[1]}"
