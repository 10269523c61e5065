"""The evaluation suite: classification and retrieval tasks, paired comparisons, one report."""
