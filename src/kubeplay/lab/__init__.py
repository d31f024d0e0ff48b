"""Air-gapped rehearsal nodes and the upstream simulator used by tests and the demo. Never production."""
