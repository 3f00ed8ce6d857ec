"""The queue core: settings, connections, the queue façade and the statements it runs.

Nothing here imports the API, the worker runtime or the job types (`make lint` checks it).
"""
