"""The render-node agent (`muster-agent`): one process per machine, one node per instance."""

VERSION = "0.1.0"
