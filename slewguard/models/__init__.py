"""Language-model fault classifier, cascaded multi-granularity pruning and export."""
