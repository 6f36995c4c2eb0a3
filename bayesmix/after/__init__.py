"""What reads a fitted model of either engine: the fit view, predictions, checks, tables, files."""
