"""The local mesh runtime: pods as network namespaces (or loopback addresses), supervised."""
