"""`python -m dvoinik` is the `dvoinik` command (used by `accelerate launch -m dvoinik train`)."""

from dvoinik.cli import app

app(prog_name="dvoinik")
