"""Importers for published weights (the UMedPT release archive; torchvision-format state dicts load directly)."""
