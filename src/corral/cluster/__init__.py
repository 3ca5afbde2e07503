"""One gateway across workers and replicas: deployment health, the probe lease, in-flight slots
and admin changes shared through Redis (``redis_url``). Without Redis nothing here runs and
each process keeps its own view, as before. Entry point: ``corral.cluster.node.Cluster``.
"""
