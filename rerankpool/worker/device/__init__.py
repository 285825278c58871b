"""``--device-process``: one process per device runs the model for the workers of its host.

- ``server``: the device process (``DeviceServer``, ``run_device_process``): takes chunks,
  merges those that wait together into one forward pass, answers each worker.
- ``client``: a worker's handle on it (``DeviceClient``): sends chunks, reads replies.
- ``stages``: a worker's stages when the model runs there (``DeviceStages``): tokenize on
  the socket thread, hand the chunks on, answer the broker when their scores are back.
- ``wire``: how a chunk travels between the two (its kind and token arrays).
"""
