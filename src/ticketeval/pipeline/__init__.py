"""Prefect 1 flows on Dask: a LocalCluster, an existing scheduler, or Saturn Cloud."""
