"""corral's lean HTTP/1.1 server for the hot routes (see ``corral.edge.server``)."""
