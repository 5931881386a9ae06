"""`dvoinik serve`: the studio and the KoboldAI- and OpenAI-compatible APIs over one loaded double."""
