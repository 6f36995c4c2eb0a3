"""Data → arrays: the formula parsed, the design encoded, its cross-products and moments."""
