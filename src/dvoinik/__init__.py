"""dvoinik: build the neural double of a writer."""

__version__ = "0.1.0"
