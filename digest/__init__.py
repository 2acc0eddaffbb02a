"""paper-digest: one short, personal email of new research papers per reader."""

__version__ = "0.1.0"
