"""sandboxctl: create, run in, and reliably clean up sandboxes for agents and CI."""

__version__ = "0.1.0"
