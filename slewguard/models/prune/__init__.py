"""Cascaded multi-granularity pruning: importance, surgery, recovery, cascade, SIA check."""
