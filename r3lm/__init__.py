"""r3lm: reasoning-informed regression for regulatory DNA activity (R3LM, Duan et al., KDD 2026)."""

__version__ = "0.1.0"
