"""The `brief` style: one short sentence per step of the grounded teacher, naming at most three motifs,
with a single statistic (the lead activator's log2 odds ratio), for small students."""

from __future__ import annotations

from r3lm.reasoning.reading import SiteReading, data_effect
from r3lm.reasoning.wording import (
    Phrasing,
    drivers,
    leading_first,
    names,
    quoted_run,
    span,
    stretch,
    verb,
    verdict,
)

DRIVERS = {"empty": "no identified motif", "both": "{pro} against {con}", "pro": "{pro}, unopposed",
           "con": "{con} with no activator", "none": "only neutral sites such as {sites}"}


class BriefRenderer(Phrasing):
    def overview(self) -> str:
        length, inventory = self.reading.card.length, self.reading.inventory
        if inventory is None:
            return self.pick(f"No motif hits are listed on this {length}-bp sequence.",
                             f"No identified motifs on the {length}-bp sequence.")
        hits = f"{inventory.n_hits} hit{'s' if inventory.n_hits > 1 else ''}"
        n_families = inventory.n_families
        families = f"{n_families} famil{'ies' if n_families > 1 else 'y'}" if n_families else "no named family"
        covered = f"{inventory.first}-{inventory.last}"
        return self.pick(f"Positions {covered} hold {hits} from {families}.",
                         f"The {length}-bp card lists {hits} in {covered}.",
                         f"{hits} in {covered}; the best match is {inventory.top.name}.")

    def _lead_note(self, site: SiteReading) -> str:
        """The one statistic: the lead's own or its family's log2 odds ratio, else its curated role."""
        evidence, role, cell = site.evidence, site.role, self.reading.cell
        if evidence is not None and data_effect(evidence):
            scope = "" if evidence.kind == "motif" else "family "
            return f" ({scope}log2 OR {evidence.log2_odds_ratio:+.2f})"
        if role is not None:
            return f" (curated {cell} {role.role})" if role.cell_type == cell else f" (known {role.role})"
        return ""

    def activators(self) -> str:
        pro, cell = self.reading.pro, self.reading.cell
        if not pro:
            name = self.reading.leading.hit.name
            return self.pick(f"No site favours {cell} activity; {name} comes closest.",
                             f"Nothing reads as a {cell} activator; the closest is {name}.")
        named, ending = names(pro, 2, note=self._lead_note(pro[0])), verb(pro, "s", "")
        return self.pick(f"{named} favour{ending} {cell} activity.",
                         f"Activity-associated in {cell}: {named}.",
                         f"{named} point{ending} to {cell} activity.")

    def counterweights(self) -> str:
        reading = self.reading
        if not (reading.con or reading.architectural):
            if reading.neutral:
                named = names(reading.neutral, 2, more=False)
                return self.pick(f"No site opposes it; {named} {verb(reading.neutral, 'is', 'are')} neutral.",
                                 f"No repressor or depleted site; {named} carry no {reading.cell} signal.")
            return f"No site opposes it; all hits, e.g. {names(reading.pro, 2, more=False)}, favour it."
        parts = []
        if reading.con:
            parts.append(f"{names(reading.con, 2)} {verb(reading.con, 'works', 'work')} against activity")
        if reading.architectural:
            parts.append(f"{names(reading.architectural, 1)} {verb(reading.architectural, 'is', 'are')} "
                         f"architectural")
        return self.pick("", "Counterweights: ") + "; ".join(parts) + "."

    def uninformative_sites(self) -> str:
        sites, cell = leading_first(self.reading), self.reading.cell
        named = names(sites, 2, more=False)
        return self.pick(f"No site carries {cell} evidence; {named} {verb(sites, 'looks', 'look')} like chance "
                         f"matches.",
                         f"{named} {verb(sites, 'carries', 'carry')} no {cell} activator or repressor signal.")

    def arrangement(self) -> str:
        motifs, layout = self.reading.card.motifs, self.reading.layout
        if len(motifs) == 1:
            return f"A single site ({motifs[0].name}, {span(motifs[0])}) gives no combinatorial grammar."
        if layout.cluster:
            cluster = stretch(layout.cluster)
            facts = [self.pick(f"Positions {cluster} hold a cluster of {len(layout.cluster)} hits",
                               f"{len(layout.cluster)} hits cluster in {cluster} bp")]
        else:
            facts = [f"The hits spread over {stretch(motifs)} with no dense cluster"]
        pair = layout.pair
        if pair is not None:
            both = f"{pair.left.name} and {pair.right.name}"
            if pair.gap < 0:
                facts.append(f"{both} overlap and compete")
            elif pair.cooperative:
                distance = "adjacent" if pair.gap == 0 else f"{pair.gap} bp apart"
                facts.append(f"{both}, {distance} ({pair.orientation}), can cooperate")
            else:
                facts.append(f"{both} are too far apart ({pair.gap} bp) to cooperate")
        elif layout.homotypic is not None:
            family, count, _ = layout.homotypic
            facts.append(f"{family} recurs x{count}")
        return "; ".join(facts) + "."

    def site_quality(self) -> str:
        quality = self.reading.quality
        site = f"{quality.lead.name} (Score {quality.lead.score:.2f})"
        if quality.strong:
            return self.pick(f"{site} is the best activating match, likely occupied.",
                             f"{site}, the top activating site, is a strong match.")
        return self.pick(f"{site} is the best activating match but weak, so occupancy is uncertain.",
                         f"{site}, the top activating site, scores below the card median.")

    def composition(self) -> str:
        composition, cpg = self.reading.composition, self.reading.composition.cpg
        return (f"At GC {self.reading.card.gc_text} it has {cpg} CpG{'s' if cpg != 1 else ''} and a longest "
                f"A/T run of {composition.run} bp{quoted_run(composition)}.")

    def absent_sites(self) -> str:
        cell = self.reading.cell
        return self.pick(f"With no sites, no {cell} activator or repressor can bind.",
                         f"No sites means no binding platform for {cell} activators.")

    def gc_step(self) -> str:
        gc, reading, cell = self.reading.card.gc_text, self.reading.gc, self.reading.cell
        if reading is None:
            return f"GC is {gc}; no {cell} trend is known, so it is not weighed."
        return self.pick(f"GC {gc} is {reading.place} the {cell} mean and {reading.effect} activity.",
                         f"GC {gc}, {reading.place} the {cell} mean, {reading.effect} activity.")

    def balance(self) -> str:
        """The tier the evidence reaches, whatever the measured level (the conclusion weighs the two)."""
        tier, gc = self.reading.tier, self.reading.card.gc_text
        weighed = f"GC {gc}" if self.reading.card.motifs else f"GC {gc} alone"
        return self.pick(f"Net evidence with {weighed}: {tier}.", f"On balance, with {weighed}, the evidence is {tier}.")

    def conclusion(self) -> str:
        (words, closing), why = verdict(self.reading), drivers(self.reading, DRIVERS, 1, more=False)
        if self.reading.consistent:
            return f"Conclusion: Given {why}, it is {words} in {self.reading.cell}. {closing}"
        caveat = (self.pick("its sites may be unoccupied", "unlisted repressors may dominate")
                  if self.reading.predicts_higher
                  else self.pick("unlisted weak sites may help", "context outside the motifs may help"))
        return f"Conclusion: With {why}, the card explains it only partly ({caveat}); it is {words}. {closing}"
