"""The engine embedded in an aiohttp application of your own.

Your application keeps its own routes and mounts the Flux routes under a prefix; its handlers
may also call the use cases directly (`flux.calls`, `flux.app`), without HTTP in between.

    python examples/embed_aiohttp.py --port 8080 --database shop.db

then, in another terminal:

    curl -X POST localhost:8080/shop/checkout -d '{"customer_id": "C-1", "amount": 10}'
    curl -X POST localhost:8080/flux/services/billing/invoice \
        -H 'Content-Type: application/json' -d '{"customer_id": "C-1", "amount": 10}'
"""

from __future__ import annotations

import argparse
from pathlib import Path

from aiohttp import web

from adapters.bootstrap import FLUX, server_app
from adapters.config import Settings
from core.errors import AlreadyExists, FluxError
from core.permissions import EVERYONE
from core.services import new_service
from engine.calls import Target

BILLING = Path(__file__).with_name("billing.py")


async def build(database: str) -> web.Application:
    shop = web.Application()
    flux_routes = await server_app(Settings(database_url=database), mount="/flux")
    shop.add_subapp("/flux", flux_routes)
    flux = flux_routes[FLUX]

    async def set_up(_: web.Application) -> None:
        # Our workflows and the service that exposes them, through the same use cases the
        # HTTP routes use. `EVERYONE` acts with every permission: this is our own process.
        await flux.app.register(EVERYONE, BILLING.read_text(), BILLING.name)
        try:
            await flux.app.create_service(EVERYONE, new_service("billing", ["billing"]))
        except AlreadyExists:
            pass

    async def checkout(request: web.Request) -> web.Response:
        order = await request.json()
        try:
            execution = await flux.calls.call(
                EVERYONE, Target.endpoint_of("billing", "invoice"), order
            )
        except FluxError as error:
            return web.json_response({"refused": error.message}, status=400)
        return web.json_response({"order": order, "invoice": execution.output})

    async def health(_: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    shop.on_startup.append(set_up)
    shop.router.add_post("/shop/checkout", checkout)
    shop.router.add_get("/health", health)
    return shop


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--database", default="shop.db")
    args = parser.parse_args()
    web.run_app(build(args.database), host="127.0.0.1", port=args.port)


if __name__ == "__main__":
    main()
