"""The DreamApply source kind: the journal reader (``journal``, the kind module
the registry imports), the full snapshot (``snapshot``), and the links both
follow (``names``)."""
