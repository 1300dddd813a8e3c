"""The local registry: what sandboxctl created, where, and why it still exists."""
