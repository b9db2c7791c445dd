"""absl flag definitions of the entry points, one `define_*_flags()` per group.

Each module also turns the parsed flags into the frozen config dataclass of its group;
library code receives that config and never reads flags.
"""
