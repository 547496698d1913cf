"""The live web dashboard: the queue, its workers and the journal's batch runs in a browser.

It reads the store and acts only through :mod:`parallelr.queue.service` (enqueue, retry, cancel),
so what it does is exactly what ``queuectl`` does. Flask is an optional extra
(``pip install "parallelr[dashboard]"``): nothing here imports it until the command runs.
"""
