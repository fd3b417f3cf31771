"""The chaos soak (`make soak`): a farm of replicas and agents under random,
seeded faults, then an invariant checker. See docs/reliability.md."""
