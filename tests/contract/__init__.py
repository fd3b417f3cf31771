"""Contract tests: the protobuf contract against Muster's MDispatcherAPI."""
