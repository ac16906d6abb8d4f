"""The `full` style: every count and statistic (carriers, log2 odds ratios, Fisher p-values, the feature
tally) in the grounded teacher's steps."""

from __future__ import annotations

from r3lm.rcc.hits import MotifHit
from r3lm.reasoning.evidence import FEATURE_KINDS, FeatureEvidence
from r3lm.reasoning.reading import SIGNIFICANT_P, SiteReading
from r3lm.reasoning.wording import (
    Phrasing,
    drivers,
    names,
    quoted_run,
    span,
    stretch,
    verb,
    verdict,
)

STRONG_P = 1e-3
PLURAL = {"family": "families", "motif": "motifs"}
DRIVERS = {"empty": "no identified motif at all", "both": "{pro} offset by {con}",
           "pro": "{pro} with no repressive counterweight", "con": "{con} without an activity-associated site",
           "none": "only uninformative sites such as {sites}"}


def _p_text(pvalue: float) -> str:
    return f"{pvalue:.1e}" if pvalue < STRONG_P else f"{pvalue:.3f}"


def _strength(evidence: FeatureEvidence) -> str:
    """How far to trust the call: its p-value, and for a neutral call why it stayed neutral."""
    if evidence.call == "neutral":
        return "not significant" if evidence.fisher_p >= SIGNIFICANT_P else "significant but below the call's size"
    if evidence.fisher_p < STRONG_P:
        return "strong"
    return "modest" if evidence.fisher_p < SIGNIFICANT_P else "nominal, not significant"


def _family(hit: MotifHit) -> str:
    """The hit's family and a comma, as a parenthesis opens with it; nothing for a hit without one."""
    return f"{hit.family}, " if hit.family else ""


def _counts(evidence: FeatureEvidence, cell_type: str) -> str:
    return (f"carried by {evidence.carriers_high:,} of {evidence.n_high:,} high-activity vs "
            f"{evidence.carriers_low:,} of {evidence.n_low:,} low-activity {cell_type} training sequences "
            f"(log2 OR {evidence.log2_odds_ratio:+.2f}, Fisher p = {_p_text(evidence.fisher_p)})")


class FullRenderer(Phrasing):
    def overview(self) -> str:
        card, length = self.reading.card, self.reading.card.length
        inventory = self.reading.inventory
        if inventory is None:
            return self.pick(
                f"The card lists no motif hits anywhere in the {length}-bp sequence, so no transcription-factor "
                f"site can be invoked and the reading must rest on composition (GC content {card.gc_text}).",
                f"No identified motifs: none of the scanned matrices passes the threshold on this {length}-bp "
                f"sequence, leaving its composition (GC {card.gc_text}) as the main evidence.")
        family, count, example, top = inventory.family, inventory.count, inventory.example, inventory.top
        first, last, n_families = inventory.first, inventory.last, inventory.n_families
        hits = f"{inventory.n_hits} motif hit{'s' if inventory.n_hits > 1 else ''}"
        if family is None or example is None:
            return (f"The card lists {hits} between positions {first}-{last} of the {length}-bp sequence, none of "
                    f"a named JASPAR family; the highest-scoring is {top.name} (Score {top.score:.2f}, Pos {span(top)}).")
        return self.pick(
            f"The card lists {hits} from {n_families} TF famil{'ies' if n_families > 1 else 'y'} between "
            f"positions {first}-{last} of the {length}-bp sequence; the most frequent family is {family} "
            f"({count} hit{'s' if count > 1 else ''}, e.g. {example.name} at {span(example)}).",
            f"{hits[0].upper()}{hits[1:]} cover positions {first}-{last} of this {length}-bp sequence, from "
            f"{n_families} famil{'ies' if n_families > 1 else 'y'}; {family} is the most represented "
            f"({count}), and the highest-scoring hit is {top.name} (Score {top.score:.2f}, Pos {span(top)}).",
            f"Inventory: {hits} across {first}-{last} of {length} bp. The best match is {top.name} "
            f"({_family(top)}Score {top.score:.2f}, {top.strand} strand, Pos {span(top)}); the most common "
            f"family is {family} with {count} hit{'s' if count > 1 else ''}.")

    def _site(self, site: SiteReading) -> str:
        """One site with its curated role and its own or its family's training evidence."""
        hit, role, evidence, cell = site.hit, site.role, site.evidence, self.reading.cell
        text = f"{hit.name} ({_family(hit)}{hit.strand} strand, Pos {span(hit)})"
        if role is not None:
            scope = f"a curated {cell} {role.role}" if role.cell_type == cell else f"a general {role.role}"
            text += f" is {scope}: {role.rationale}"
        if evidence is None:
            return f"{text}; no {cell} training evidence covers {'its family' if hit.family else 'it'}"
        detail = self.pick(_counts(evidence, cell),
                           f"{_counts(evidence, cell)}; carriers average level "
                           f"{evidence.mean_level_carriers:.2f} vs {evidence.mean_level_others:.2f}")
        subject = f"{hit.name} itself" if evidence.kind == "motif" else f"its family {evidence.feature}"
        return f"{text}; {subject} is {evidence.call} in {cell} training data ({_strength(evidence)}), {detail}"

    def activators(self) -> str:
        pro, cell = self.reading.pro, self.reading.cell
        if not pro:
            leading = self.reading.leading
            return self.pick(
                f"No card motif is a curated {cell} activator or is significantly enriched, by itself or through "
                f"its family, among high-activity {cell} training sequences; the closest candidate is "
                f"{self._site(leading)}.",
                f"Nothing on the card reads as a {cell} activator: {self._site(leading)}.")
        text = self.pick(f"Sites favouring activity in {cell}: ",
                         f"Several card motifs point toward {cell} activity. ",
                         f"Activity-associated evidence for {cell}: ") if len(pro) > 1 else ""
        text += ". ".join(self._site(site) for site in pro[:2])
        if pro[2:]:
            text += f". Further activity-associated hits: {names(pro[2:])}"
        return text + "."

    def counterweights(self) -> str:
        reading, cell = self.reading, self.reading.cell
        against = reading.con + reading.architectural
        if not against:
            others = reading.neutral or reading.pro
            label = ("carry neutral" if reading.neutral
                     else "are all among the activity-associated sites, with no opposing")
            return self.pick(
                f"No card motif is a curated repressor or is depleted, by itself or through its family, among "
                f"high-activity {cell} training sequences; the other hits ({names(others)}) {label} "
                f"{cell} evidence.",
                f"Nothing on the card works against activity: there is no repressor site and no depleted family, "
                f"and {names(others)} {label} {cell} evidence.")
        sites = ". ".join(self._site(site) for site in against[:2])  # before the heading: the seeded order
        text = self.pick("Against activity: ", "Counterweights: ", "Sites that can limit activity: ") + sites
        if len(against) > 2:
            text += f". Also {names(against[2:])}"
        return text + "."

    def uninformative_sites(self) -> str:
        leading, cell = self.reading.leading, self.reading.cell
        others = [other for other in self.reading.readings if other.hit.name != leading.hit.name]
        tail = f"; the other hits ({names(others)}) are equally uninformative" if others else ""
        return self.pick(
            f"Neither a curated {cell} activator or repressor nor a motif or family with significant "
            f"{cell} training evidence is on the card: {self._site(leading)}{tail}.",
            f"The listed sites carry little {cell} information: {self._site(leading)}{tail}, consistent with "
            f"chance-level matches.")

    def arrangement(self) -> str:
        motifs, grammar, layout = self.reading.card.motifs, self.reading.grammar, self.reading.layout
        if len(motifs) == 1:
            hit = motifs[0]
            return (f"With a single site ({hit.name}, {hit.strand} strand, Pos {span(hit)}) there is no "
                    f"combinatorial grammar; any activity must come from that one site or from features the card "
                    f"does not list.")
        cluster, facts = layout.cluster, []
        if cluster:
            facts.append(self.pick(
                f"{len(cluster)} motifs crowd into {stretch(cluster)}, a dense cluster of the kind that marks "
                f"enhancer modules",
                f"a cluster of {len(cluster)} hits sits in {stretch(cluster)}, which favours cooperative occupancy"))
        else:
            facts.append(f"the hits are spread over {stretch(motifs)} with no dense cluster "
                         f"({grammar.cluster_min_motifs} or more within {grammar.cluster_window} bp)")
        pair = layout.pair
        if pair is not None:
            left, right, gap = pair.left, pair.right, pair.gap
            if gap < 0:
                facts.append(f"the activity-associated {left.name} ({span(left)}) and {right.name} "
                             f"({span(right)}) overlap, so they compete for one stretch rather than cooperate")
            else:
                close = ("close enough for cooperative binding" if pair.cooperative
                         else "too far apart to suggest direct cooperation")
                distance = "directly adjacent" if gap == 0 else f"{gap} bp apart"
                facts.append(f"the closest activity-associated pair, {left.name} ({span(left)}) and {right.name} "
                             f"({span(right)}), is {distance} in {pair.orientation} orientation, {close}")
        if layout.homotypic is not None:
            family, count, hits = layout.homotypic
            spans = ", ".join(span(hit) for hit in hits)
            facts.append(f"{family} recurs x{count} ({spans}), a homotypic repeat that raises the chance of occupancy")
        return self.pick("Arrangement: ", "Motif grammar: ", "Spatial layout: ") + "; ".join(facts) + "."

    def site_quality(self) -> str:
        quality = self.reading.quality
        lead = quality.lead
        verdict_text = (self.pick("a comparatively strong match that is likely occupied",
                                  "one of the card's better matches, so occupancy is plausible") if quality.strong
                        else self.pick("weaker than most hits on the card, so its occupancy is uncertain",
                                       "a modest match, which tempers how much it can contribute"))
        return (f"Site quality: the best-scoring activity-associated hit is {lead.name} (Score {lead.score:.2f}, "
                f"Pos {span(lead)}), against a card median of {quality.median:.2f}; it is {verdict_text}.")

    def composition(self) -> str:
        """For a card without motifs: CpG density and the longest A/T run, the sequence's own features."""
        card, composition = self.reading.card, self.reading.composition
        cpg = composition.cpg
        return (f"Composition: at GC {card.gc_text} the sequence carries {cpg} CpG dinucleotide"
                f"{'s' if cpg != 1 else ''} (observed/expected {composition.ratio:.2f}) and its longest A/T-only "
                f"stretch is {composition.run} bp{quoted_run(composition)}, features a scan for TF motifs does not "
                f"capture.")

    def absent_sites(self) -> str:
        cell = self.reading.cell
        families, motifs = self._count("family", "enriched"), self._count("motif", "enriched")
        return self.pick(
            f"With no motifs listed, none of the {families} families and {motifs} motifs significantly enriched "
            f"among high-activity {cell} training sequences has a site here, and no repressor site is "
            f"present either.",
            f"Because no sites are identified, the {self.reading.card.length}-bp sequence offers no binding platform "
            f"for {cell} activators ({families} enriched families and {motifs} enriched motifs in training) and "
            f"no repressor site.")

    def gc_step(self) -> str:
        gc, trend, reading, cell = self.reading.card.gc_text, self.reading.trend, self.reading.gc, self.reading.cell
        if trend is None or reading is None:
            return f"GC content is {gc}; no {cell} training trend is available, so composition is not weighed."
        place, tracks, effect = reading.place, reading.tracks, reading.effect
        stats = (f"Spearman rho {trend.spearman_rho:+.2f}; mean GC {trend.mean_gc_high:.3f} in high- vs "
                 f"{trend.mean_gc_low:.3f} in low-activity sequences")
        return self.pick(
            f"GC content is {gc}, {place} the {cell} training mean of {trend.mean_gc:.3f}; across "
            f"{cell} training sequences activity {tracks} GC ({stats}), so this composition {effect} activity.",
            f"Composition: the GC fraction of {gc} is {place} the {cell} average ({trend.mean_gc:.3f}). "
            f"In {cell} training data activity {tracks} GC ({stats}); here it {effect} activity.")

    def _count(self, kind: str, call: str) -> int:
        return self.reading.totals[(kind, call)]

    def _carried_parts(self, call: str) -> str:
        """e.g. "3 of the 11 enriched families and 2 of the 40 enriched motifs", or "none of the 2 depleted
        families or the 23 depleted motifs" (kinds the cell type has none of are left out; "" when none)."""
        carried = self.reading.carried
        kinds = [kind for kind in FEATURE_KINDS if self._count(kind, call)]
        if kinds and not any(carried[(kind, call)] for kind in kinds):
            return "none of the " + " or the ".join(f"{self._count(kind, call)} {call} {PLURAL[kind]}"
                                                    for kind in kinds)
        return " and ".join(f"{carried[(kind, call)]} of the {self._count(kind, call)} {call} {PLURAL[kind]}"
                            for kind in kinds)

    def _tally(self) -> str:
        """How many of the cell type's significant features the card carries, without naming absent ones."""
        enriched, depleted, cell = self._carried_parts("enriched"), self._carried_parts("depleted"), self.reading.cell
        if not enriched and not depleted:
            return f"No family or motif is significantly enriched or depleted in {cell} training data."
        if enriched and depleted:
            contrast = enriched.startswith("none") != depleted.startswith("none")
            return (f"Of the {cell} training features, the card carries {enriched}, "
                    f"{'but' if contrast else 'and'} {depleted}.")
        missing = "depleted" if enriched else "enriched"
        return (f"Of the {cell} training features, the card carries {enriched or depleted}; no family or motif "
                f"is significantly {missing}.")

    def _weighed(self) -> str:
        reading = self.reading
        gc = reading.card.gc_text
        if not reading.card.motifs:
            return f"No site is listed, so only the composition (GC {gc}) counts"
        pro = (f"{names(reading.pro)} {verb(reading.pro, 'favours', 'favour')} activity" if reading.pro
               else "no site favours activity")
        con = (f"{names(reading.con)} {verb(reading.con, 'works', 'work')} against it" if reading.con
               else "none opposes it")
        return f"At GC {gc}, {pro} and {con}"

    def balance(self) -> str:
        """The tier the evidence reaches, whatever the measured level (the conclusion weighs the two)."""
        tier, weighed, tally = self.reading.tier, self._weighed(), self._tally()
        return f"{weighed}. {tally} " + self.pick(f"On balance the evidence is {tier}.",
                                                  f"The evidence is therefore {tier}.")

    def _caveat(self) -> str:
        """What the card cannot show, when its tier and the measured level disagree."""
        if self.reading.predicts_higher:
            return self.pick("the activity-associated sites may be weak matches that are not occupied, or repressive "
                             "features not on the card may dominate",
                             "enrichment of a family among training sequences does not guarantee that this "
                             "particular site is bound, and the card cannot show chromatin state or unlisted "
                             "repressors")
        return self.pick("activity likely comes from features the card does not capture, such as sites below "
                         "the scan threshold or unlisted cofactors",
                         "sub-threshold sites or sequence context outside the scanned motifs probably contribute")

    def conclusion(self) -> str:
        words, closing = verdict(self.reading)
        cell, why = self.reading.cell, drivers(self.reading, DRIVERS, 2, more=True)
        if self.reading.consistent:
            return f"Conclusion: Given {why}, this sequence is {words} in {cell}. {closing}"
        return (f"Conclusion: The card explains this sequence's {cell} activity only partly "
                f"({why}): {self._caveat()}; taking the measurement as given, it is {words}. {closing}")
