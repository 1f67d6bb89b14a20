"""The built-in web page: runs list and run pages, served by ``create_app(engine, ui=True)``."""
