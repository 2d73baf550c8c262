"""The one runtime of the process: run registry, set-ups, patches, signal and fork handling."""
