"""Datasets: synthetic multi-domain demo data (:mod:`medfound.data.synthetic`).

- :mod:`medfound.data.datalist`: the datalist format (``image``, ``label``, ``domain``; class names, regions).
- :mod:`medfound.data.fundus`, :mod:`medfound.data.polyp`, :mod:`medfound.data.scgm`: adapters for the
  public DoFE, PraNet and SCGM layouts.
- :mod:`medfound.data.splits`: leave-one-domain-out CD-SSDG splits.
"""
