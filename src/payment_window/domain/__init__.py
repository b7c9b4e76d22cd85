"""Pure rules: no I/O, no frameworks, time passed in."""
