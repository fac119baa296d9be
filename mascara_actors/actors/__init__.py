"""The actors of a camera's pipeline and the supervisor that wires them.

camera -> reducer -> saver, every actor -> events -> summariser. Each actor is one module
with an ``async def run(...)``; they talk through bounded anyio memory object streams and
stop when their inbox closes. :mod:`.pipeline` owns them all in one task group.
"""
