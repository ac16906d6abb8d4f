"""Stage II: reason-conditioned regression on the card and a rationale (or the card or DNA alone)."""
