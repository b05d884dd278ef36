"""jobs: the stam-label command, the Ray Data pipeline, storage and the commit protocol."""
