"""Datasets: synthetic multi-domain demo data (:mod:`medfound.data.synthetic`)."""
