"""Keyword-only profiles for the ranking benchmark: what a researcher of each category would type as interests.

Written from the field's vocabulary, once, before any measurement, and never adjusted to the results (tuning
words on the pools would measure the words, not the ranker). Three phrases per category, the 20 categories of
each shared evaluation file's protocol.
"""

from __future__ import annotations

KEYWORDS: dict[str, tuple[str, ...]] = {
    # papers.jsonl
    "cs.CV": ("image segmentation", "object detection", "convolutional neural networks"),
    "cs.LG": ("deep learning", "neural network training", "reinforcement learning"),
    "astro-ph": ("galaxies", "stellar evolution", "cosmic microwave background"),
    "stat.ML": ("statistical learning", "bayesian inference", "kernel methods"),
    "hep-th": ("string theory", "gauge theories", "supersymmetry"),
    "hep-ph": ("standard model", "collider phenomenology", "neutrino masses"),
    "cs.AI": ("knowledge representation", "planning", "multi-agent systems"),
    "quant-ph": ("quantum entanglement", "quantum computing", "qubits"),
    "gr-qc": ("general relativity", "black holes", "gravitational waves"),
    "cond-mat.mtrl-sci": ("thin films", "crystal structure", "first-principles calculations"),
    "cond-mat.stat-mech": ("phase transitions", "statistical mechanics", "non-equilibrium dynamics"),
    "cond-mat.str-el": ("strongly correlated electrons", "hubbard model", "heavy fermions"),
    "cond-mat.mes-hall": ("quantum dots", "graphene", "quantum hall effect"),
    "nucl-th": ("nuclear structure", "heavy-ion collisions", "nuclear matter"),
    "math-ph": ("mathematical physics", "integrable systems", "schrodinger operators"),
    "math.MP": ("mathematical physics", "spectral theory", "integrable systems"),
    "cond-mat.supr-con": ("superconductivity", "cuprates", "pairing symmetry"),
    "math.AG": ("algebraic varieties", "moduli spaces", "sheaves"),
    "cond-mat.other": ("bose-einstein condensates", "cold atoms", "superfluidity"),
    "cond-mat.soft": ("polymers", "colloids", "liquid crystals"),
    # arxiv-2012-2017.jsonl (cs.LG, stat.ML, hep-th, hep-ph, cs.AI, quant-ph, cond-mat.*, math-ph and math.AG
    # are shared with the list above)
    "physics.soc-ph": ("social networks", "opinion dynamics", "epidemic spreading"),
    "math.CO": ("graph theory", "combinatorics", "permutations"),
    "math.PR": ("stochastic processes", "random walks", "brownian motion"),
    "physics.bio-ph": ("biophysics", "protein folding", "cell mechanics"),
    "math.OC": ("optimal control", "convex optimization", "optimization algorithms"),
    "math.DS": ("dynamical systems", "ergodic theory", "bifurcations"),
    "cs.SI": ("social networks", "community detection", "information diffusion"),
    "cs.DS": ("algorithms", "approximation algorithms", "data structures"),
    "math.NA": ("numerical analysis", "finite element method", "numerical schemes"),
}
