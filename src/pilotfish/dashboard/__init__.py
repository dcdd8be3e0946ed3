"""The web dashboard: a service graph, workload health, config findings and traces."""
