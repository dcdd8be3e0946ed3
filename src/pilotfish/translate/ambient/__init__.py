"""Translation for sidecarless (ambient) pods: the node proxy's composition."""
