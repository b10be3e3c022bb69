from fastapi import FastAPI

from greeter import __version__


def create_app() -> FastAPI:
    app = FastAPI(title="greeter", version=__version__)

    @app.get("/")
    async def index() -> dict[str, str]:
        return {"service": "fastapi-hello", "version": __version__}

    @app.get("/hello/{name}")
    async def hello(name: str) -> dict[str, str]:
        return {"greeting": f"hello {name}"}

    return app
