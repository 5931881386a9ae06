"""From an author's files to a clean, deduplicated, mixed training corpus."""
