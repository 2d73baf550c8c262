"""Everything that touches ondine: observer hooks, client wrapper, checkpoints, execute net."""
