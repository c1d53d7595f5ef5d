"""The local prediction server's parts: the ASGI app (app, with page.html) and the server started in a
child process for the tests and the load bench (process)."""
