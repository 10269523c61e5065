"""Corpus loading, cleaning, de-duplication, group splits and the DeCLUTR span sampler."""
