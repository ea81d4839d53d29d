"""The gpupipe domain: job requests, the job lifecycle, users and quotas, batches, usage.

Nothing in here imports a cloud client: services talk to the ports in `core.ports`.
"""
