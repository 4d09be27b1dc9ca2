"""The KServe Open Inference Protocol (v2) over REST.

``schemas``: the protocol's JSON objects; ``tensors``: tensor decoding and
encoding (JSON and the binary tensor data extension); ``routes``: the endpoints
(``routes.routes`` is the aiohttp route table the daemon's app adds).
"""
