"""The contract: Avro schemas (``*.avsc``), their Python values (``model``) and the codec."""
