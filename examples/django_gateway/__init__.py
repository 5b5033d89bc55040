"""A minimal Django gateway behind srtm, served over WSGI (``wsgi.py``) or ASGI (``asgi.py``)."""
