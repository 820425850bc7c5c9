"""Payloads written by hand from the vendor documents, run through the product."""
